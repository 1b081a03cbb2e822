"""Hostile files through the real command, `threadwise ingest`, as a separate process: each ends soon with
a reason, the whole process tree stays under 1 GiB of resident memory, and the knowledge base keeps
nothing of a refused file. The files come from tests/hostile/make_corpus.py, generated into tmp_path.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile.make_corpus import CORPUS, pdf_flate_bomb, token_flood_docx, write_corpus, zip_bomb_docx
from tests.processes import VENV_BIN, threadwise_env

pytestmark = pytest.mark.slow

GiB = 1024**3
MEMORY_GOAL = 1 * GiB
SECONDS_GOAL = 30.0


def _tree(root: int) -> list[int]:
    """`root` and every process below it, from the kernel's children lists (one per thread: a
    process started from a worker thread is that thread's child)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in children.read_text().split())
            except OSError:
                continue
    return found


def _proportional(pid: int) -> int:
    """The memory `pid` holds, with each page it shares with other processes counted in proportion
    (PSS): summed over a tree, the physical memory the tree takes."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Polls the memory of a process tree every 10 ms until the root exits. Pages shared between
    processes (the parse helper and the child forked from it share the interpreter) are split among
    them, not counted once in each: the sum is what the tree takes from the machine."""

    def __init__(self, root: subprocess.Popen[bytes]) -> None:
        self.peak = 0
        self._root = root
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while self._root.poll() is None:
            self.peak = max(self.peak, sum(_proportional(pid) for pid in _tree(self._root.pid)))
            time.sleep(0.01)

    def join(self) -> int:
        self._thread.join()
        return self.peak


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    seconds: float
    peak: int


def threadwise(tmp_path: Path, *argv: str, timeout: float = 120) -> Run:
    """`threadwise ARGV…` on an embedded store under tmp_path, its output kept in files (never a
    pipe that could fill up while we watch its memory)."""
    env = threadwise_env({"CHROMA_PERSIST_DIRECTORY": str(tmp_path / "chroma"), "LLM_PROVIDER": "extractive"})
    out_path, err_path = tmp_path / f"{argv[0]}.out", tmp_path / f"{argv[0]}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen([str(VENV_BIN / "threadwise"), *argv], stdout=out, stderr=err, env=env)
        watch = PeakMemory(proc)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        seconds = time.monotonic() - started
        peak = watch.join()
    return Run(code, out_path.read_text(), err_path.read_text(), seconds, peak)


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        (
            "report.docx",
            zip_bomb_docx,
            "report.docx has a part that expands more than 100 times when unpacked, so I'm refusing "
            "to open it (it looks like a zip bomb).",
        ),
        (
            "report.pdf",
            pdf_flate_bomb,
            "report.pdf needs more memory than I allow for one file, so I stopped reading it",
        ),
    ],
)
def test_a_file_that_inflates_to_a_gigabyte_is_refused_within_the_memory_and_time_goal(
    tmp_path: Path, name: str, make: Callable[[], bytes], reason: str
) -> None:
    bomb = tmp_path / name
    bomb.write_bytes(make())
    assert bomb.stat().st_size < 2 * 1024 * 1024  # far below MAX_FILE_SIZE_MB (10)

    run = threadwise(tmp_path, "ingest", str(bomb))

    assert run.code == 1, run.err
    assert f"skipped: {reason}" in run.err
    assert "Traceback" not in run.err
    assert "local: 0 documents ingested (0 unchanged, 1 failed), 0 chunks" in run.out
    assert run.seconds < SECONDS_GOAL
    assert run.peak < MEMORY_GOAL, f"peak {run.peak / GiB:.2f} GiB"


def test_every_file_of_the_hostile_corpus_ends_soon_with_a_reason_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    (corpus / "vpn-guide.md").write_text("# VPN guide\n\nRenew the VPN certificate every 90 days.\n")

    run = threadwise(tmp_path, "ingest", str(corpus))
    listed = threadwise(tmp_path, "docs")

    assert run.code == 1, run.err
    assert "Traceback" not in run.err
    skipped = {line.split(":")[1].split()[0]: line for line in run.err.splitlines() if "skipped:" in line}
    refused = [hostile for hostile in CORPUS if hostile.refusal]
    assert sorted(skipped) == sorted(hostile.name for hostile in refused)
    for hostile in refused:
        assert hostile.refusal in skipped[hostile.name], skipped[hostile.name]
    parsed = [hostile.name for hostile in CORPUS if not hostile.refusal] + ["vpn-guide.md"]
    summary = f"local: {len(parsed)} documents ingested (0 unchanged, {len(refused)} failed)"
    assert summary in run.out
    documents = {line.split()[1] for line in listed.out.splitlines() if line.startswith("•")}
    assert documents == set(parsed)  # nothing of a refused file, not even half of one
    # Each parse has its own 20 s budget (the tag flood uses all of it); this bounds the whole run, with
    # one model load, on a busy 2-core machine.
    assert run.seconds < 120
    assert run.peak < MEMORY_GOAL, f"peak {run.peak / GiB:.2f} GiB"


def test_a_small_file_of_millions_of_words_is_refused_within_the_memory_and_time_goal(tmp_path: Path) -> None:
    """10 KB of .docx, 9.8 MB of "a a a …" once unpacked (its own run, not in the corpus: the corpus
    run stays within the memory goal with its own files). The tokenizer was given the whole paragraph
    at once (5 million offsets, 3.4 GiB in the main process, 45 s). Now it reads a bounded block at a
    time and stops once the file holds more word pieces than the most passages a file may have."""
    flood = tmp_path / "flood.docx"
    flood.write_bytes(token_flood_docx())

    run = threadwise(tmp_path, "ingest", str(flood))

    assert run.code == 1, run.err
    assert "skipped: flood.docx is too long: over 5,000 passages. Please split it into smaller" in run.err
    assert "Traceback" not in run.err
    assert run.seconds < SECONDS_GOAL
    assert run.peak < MEMORY_GOAL, f"peak {run.peak / GiB:.2f} GiB"
