"""The embedded Chroma store on disk: its directory lock, and what makes a directory a store.

The embedded store is not safe across processes, so a process takes an exclusive lock on the
directory before it opens it; a second process is told what to do instead of corrupting the data.
Backup and restore hold the same lock without opening Chroma.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from rag.errors import ConfigError, StoreInUseError

DATABASE = "chroma.sqlite3"  # Chroma's own: its presence makes a directory a store
LOCK_FILE = ".threadwise.lock"  # belongs to the process holding the store: never archived
_CHROMA_TABLES = frozenset({"collections", "segments", "embeddings"})

_held_locks: dict[str, int] = {}


def lock_directory(path: Path) -> None:
    """Take this process's exclusive lock on a store directory (idempotent); StoreInUseError when
    another process has it."""
    key = str(path.resolve())
    if key in _held_locks:
        return
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 64).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise StoreInUseError(
            f"The embedded store {path} is in use by process {owner}. Stop that process first "
            "(e.g. the running `threadwise serve` or `threadwise chat`), or run a Chroma server "
            "(`chroma run --path DIR`) and set CHROMA_HOST so several processes can share it.",
            owner=owner,
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held_locks[key] = fd


def release_directory(path: Path) -> None:
    """Give up this process's lock on an embedded store directory (after its client is closed)."""
    fd = _held_locks.pop(str(path.resolve()), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def hold_directory(path: Path) -> Iterator[None]:
    """The embedded store's directory to ourselves, without opening Chroma (backup and restore).

    Raises StoreInUseError when another process has it, and refuses when this process has it open.
    """
    path.mkdir(parents=True, exist_ok=True)
    if str(path.resolve()) in _held_locks:
        raise ConfigError(f"The embedded store {path} is open in this process: close it first.")
    lock_directory(path)
    try:
        yield
    finally:
        release_directory(path)


def is_store(path: Path) -> bool:
    return (path / DATABASE).is_file()


def store_files(path: Path) -> list[Path]:
    """The files that make up the store in `path` (regular files, not links), its lock left out."""
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink() and p.name != LOCK_FILE)


def check_store(path: Path, *, prefix: str | None) -> str | None:
    """Why the files in `path` are not a whole Chroma store holding threadwise's collections under
    `prefix` (or none yet), or None when they are. Any other SQLite file named chroma.sqlite3 would
    replace the store and then fail every request."""
    if not is_store(path):
        return f"it holds no {DATABASE}"
    try:
        with contextlib.closing(sqlite3.connect(path / DATABASE)) as db:
            result = db.execute("PRAGMA quick_check").fetchone()
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            names = (
                sorted(str(row[0]) for row in db.execute("SELECT name FROM collections"))
                if tables >= _CHROMA_TABLES
                else []
            )
    except sqlite3.Error as exc:
        return f"its database cannot be opened ({exc})"
    if not result or result[0] != "ok":
        return f"its database is damaged ({result[0] if result else 'no answer'})"
    if not tables >= _CHROMA_TABLES:
        return f"it is not a Chroma store (its {DATABASE} has no collections table)"
    ours = [n for n in names if prefix is None or n.startswith(f"{prefix}-")]
    if names and not ours:
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        return f"it holds no knowledge base of threadwise (CHROMA_COLLECTION_NAME={prefix}), only: {shown}"
    return None
