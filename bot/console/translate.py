"""Terminal input → `Incoming`: the console adapter's pure translation."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from bot.console.sender import ConsoleAddress
from bot.core.model import FileRef, Incoming

PLATFORM = "console"
CONSOLE_THREAD = "console"


def translate_line(line: str, *, user: str, session: str) -> Incoming:
    """A line typed at the prompt. `/upload PATH…` shares files, anything else is a message."""
    text = line.strip()
    files: tuple[FileRef, ...] = ()
    if text.lower().startswith("/upload"):
        paths = text.split()[1:]
        files = tuple(_file_ref(p) for p in paths)
        text = ""
    return Incoming(
        platform=PLATFORM,
        workspace="local",
        user=user,
        text=text,
        event_id=uuid.uuid4().hex,
        is_direct=True,
        thread=f"{CONSOLE_THREAD}:{session}",
        address=ConsoleAddress(session),
        files=files,
    )


def _file_ref(path: str) -> FileRef:
    p = Path(os.path.expanduser(path))
    size = p.stat().st_size if p.is_file() else None
    return FileRef(name=p.name, size=size, url=str(p))
