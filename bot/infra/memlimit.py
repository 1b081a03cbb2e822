"""The memory limit of this process's container, from its cgroup (v2, else v1): what the kernel's OOM
killer enforces, so that alerts can compare resident memory with it. +Inf when there is none."""

from __future__ import annotations

import math
from pathlib import Path

CGROUP_FILES = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2: a number, or "max"
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1: a huge number means none
)
UNLIMITED_FROM = 2**62  # cgroup v1 writes "no limit" as the largest page-aligned 63-bit number


def memory_limit_bytes(files: tuple[Path, ...] = CGROUP_FILES) -> float:
    """The first readable limit of `files`, in bytes; +Inf when none is set or none can be read."""
    for path in files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if not text.isdigit():  # "max"
            return math.inf
        limit = int(text)
        return math.inf if limit >= UNLIMITED_FROM else float(limit)
    return math.inf
