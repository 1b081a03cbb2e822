"""`threadwise backup` and `threadwise restore FILE`: the embedded store, by hand.

Both take the store's directory lock without opening Chroma, so they refuse while another process
(`threadwise serve`, `chat`…) has the store. A running `serve` takes its own backups on BACKUP_SCHEDULE.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from bot.confirm import confirm
from bot.settings import Settings
from rag.backup import restore_archive, snapshot_at_rest
from rag.errors import UserFacingError
from rag.store import StoreInUseError, hold_directory


def server_hint(settings: Settings, command: str) -> str:
    instead = {
        "backup": "Back up the server's data instead: snapshot its volume, or archive the directory it "
        "runs on (`chroma run --path DIR`) with the server stopped.",
        "restore": "Restore the server's data instead: stop the server, put the directory it runs on "
        "(`chroma run --path DIR`) or its volume back from your snapshot, and start it again.",
    }[command]
    return (
        f"CHROMA_HOST is set: the knowledge bases live in the Chroma server at {settings.chroma_host}:"
        f"{settings.chroma_port}, not in an embedded store here, so `threadwise {command}` does not "
        f"apply. {instead}"
    )


async def run_backup(settings: Settings, *, out: TextIO) -> int:
    if settings.chroma_host:
        raise UserFacingError(server_hint(settings, "backup"))
    source = Path(settings.chroma_persist_directory)
    backup_dir = Path(settings.backup_dir)
    try:
        with hold_directory(source):
            result = await asyncio.to_thread(
                snapshot_at_rest,
                source=source,
                backup_dir=backup_dir,
                retention_days=settings.backup_retention_days,
            )
    except StoreInUseError as exc:
        raise UserFacingError(
            f"The store {source} is in use by process {exc.owner}. If that is `threadwise serve`, it "
            f"takes backups itself on BACKUP_SCHEDULE ({settings.backup_schedule}); `kill -USR1 "
            f"{exc.owner}` makes it take one now, into {backup_dir}. Otherwise stop that process and "
            "run `threadwise backup` again."
        ) from None
    backup = result.backup
    print(
        f"Backed up {source} to {backup.path} ({backup.files} files, {human_size(backup.data_bytes)}, "
        f"{result.seconds:.1f} s).",
        file=out,
    )
    if result.removed:
        names = ", ".join(p.name for p in result.removed)
        days = settings.backup_retention_days
        print(f"Removed {len(result.removed)} older than {days} days: {names}.", file=out)
    return 0


async def run_restore(settings: Settings, archive: Path, *, yes: bool, stdin: TextIO, out: TextIO) -> int:
    if settings.chroma_host:
        raise UserFacingError(server_hint(settings, "restore"))
    target = Path(settings.chroma_persist_directory)
    try:
        with hold_directory(target):
            confirm(
                f"Replace every knowledge base in {target} with the backup {archive.name}?",
                yes=yes,
                stdin=stdin,
                out=out,
            )
            backup = await asyncio.to_thread(restore_archive, archive, target)
    except StoreInUseError as exc:
        raise UserFacingError(
            f"The store {target} is in use by process {exc.owner}: stop it (`threadwise serve`, `chat`…) "
            "before restoring. Nothing was changed."
        ) from None
    print(
        f"Restored {target} from {archive} (taken {backup.taken_at:%Y-%m-%d %H:%M} UTC, {backup.files} "
        f"files, {human_size(backup.data_bytes)}).",
        file=out,
    )
    return 0


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError(n)
