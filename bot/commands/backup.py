"""`threadwise backup` and `threadwise restore FILE`, by hand or from a scheduled job (a Kubernetes
CronJob).

Embedded store (no CHROMA_HOST): both take the store's directory lock without opening Chroma, so they
refuse while another process (`threadwise serve`, `chat`…) has the store; a running `serve` takes its
own backups on BACKUP_SCHEDULE. Chroma server (CHROMA_HOST): `backup` exports every knowledge base
through the server's API while serves and workers go on, and `restore` replaces them there in place.
Either kind of archive restores into either set-up (e.g. moving from one machine to a server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from bot.commands.base import SubParsers, add
from bot.commands.confirm import confirm
from bot.compose import open_store
from bot.settings import Settings
from rag.backup import (
    BackupResult,
    backup_server,
    hold_store,
    restore_archive,
    restore_to_server,
    snapshot_at_rest,
)
from rag.errors import StoreInUseError, UserFacingError
from rag.export import ExportSummary
from rag.filetypes import human_size


def register(sub: SubParsers) -> None:
    help = "archive every knowledge base (embedded or CHROMA_HOST) into BACKUP_DIR (.tar.gz)"
    add(sub, "backup", _backup, help=help)  # the store's files, without opening Chroma
    help = "replace every knowledge base with those of a backup archive"
    restore = add(sub, "restore", _restore, help=help)
    restore.add_argument("file", metavar="FILE")
    restore.add_argument("--yes", action="store_true", help="do not ask before replacing the store")


async def _backup(args: argparse.Namespace, settings: Settings) -> int:
    return await run_backup(settings, out=sys.stdout)


async def _restore(args: argparse.Namespace, settings: Settings) -> int:
    return await run_restore(settings, Path(args.file), yes=args.yes, stdin=sys.stdin, out=sys.stdout)


async def run_backup(settings: Settings, *, out: TextIO) -> int:
    backup_dir = Path(settings.backup_dir)
    if settings.chroma_host:
        store = await asyncio.to_thread(open_store, settings)
        result = await asyncio.to_thread(
            backup_server,
            store,
            backup_dir=backup_dir,
            retention_days=settings.backup_retention_days,
        )
        assert result.contents is not None  # an export says what it holds
        _report(settings, result, _server_name(settings), _contents(result.contents), out=out)
        await _note(settings, result, out=out)
        return 0
    source = Path(settings.chroma_persist_directory)
    try:
        with hold_store(source):
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
    _report(settings, result, str(source), f"{result.backup.files} files", out=out)
    return 0


async def _note(settings: Settings, result: BackupResult, *, out: TextIO) -> None:
    """With REDIS_URL, note the success where serves and workers export it for the alert on missing
    backups. The backup is taken either way: a Redis that does not answer is only said."""
    if not settings.redis_url:
        return
    from redis.exceptions import RedisError

    from bot.infra.backup_record import note_backup

    try:
        await note_backup(settings.redis_url, result.backup.taken_at)
    except RedisError as exc:
        print(f"Could not note the backup in Redis ({type(exc).__name__}): /metrics misses it.", file=out)


def _report(settings: Settings, result: BackupResult, what: str, holding: str, *, out: TextIO) -> None:
    backup = result.backup
    size = human_size(backup.data_bytes)
    print(f"Backed up {what} to {backup.path} ({holding}, {size}, {result.seconds:.1f} s).", file=out)
    if result.removed:
        names = ", ".join(p.name for p in result.removed)
        days = settings.backup_retention_days
        print(f"Removed {len(result.removed)} older than {days} days: {names}.", file=out)


async def run_restore(settings: Settings, archive: Path, *, yes: bool, stdin: TextIO, out: TextIO) -> int:
    if settings.chroma_host:
        return await _restore_server(settings, archive, yes=yes, stdin=stdin, out=out)
    target = Path(settings.chroma_persist_directory)
    try:
        with hold_store(target):
            confirm(
                f"Replace every knowledge base in {target} with the backup {archive.name}?",
                yes=yes,
                stdin=stdin,
                out=out,
            )
            backup = await asyncio.to_thread(
                restore_archive, archive, target, prefix=settings.chroma_collection_name
            )
    except StoreInUseError as exc:
        raise UserFacingError(
            f"The store {target} is in use by process {exc.owner}: stop it (`threadwise serve`, `chat`…) "
            "before restoring. Nothing was changed."
        ) from None
    print(
        f"Restored {target} from {archive} (taken {backup.taken_at:%Y-%m-%d %H:%M} UTC, {backup.kind}, "
        f"{human_size(backup.data_bytes)}).",
        file=out,
    )
    return 0


async def _restore_server(settings: Settings, archive: Path, *, yes: bool, stdin: TextIO, out: TextIO) -> int:
    store = await asyncio.to_thread(open_store, settings)
    confirm(
        f"Replace every knowledge base in {_server_name(settings)} with the backup {archive.name}? "
        "Documents uploaded while it runs may be lost: stop the workers first.",
        yes=yes,
        stdin=stdin,
        out=out,
    )
    backup, loaded = await asyncio.to_thread(
        restore_to_server,
        archive,
        store,
        prefix=settings.chroma_collection_name,
        work_dir=Path(settings.backup_dir),
    )
    print(
        f"Restored {_server_name(settings)} from {archive} (taken {backup.taken_at:%Y-%m-%d %H:%M} UTC, "
        f"{backup.kind}; {_contents(loaded)}). Running serves and workers answer from it at once.",
        file=out,
    )
    return 0


def _server_name(settings: Settings) -> str:
    return f"the Chroma server at {settings.chroma_host}:{settings.chroma_port}"


def _contents(summary: ExportSummary) -> str:
    return (
        f"{summary.knowledge_bases} knowledge base{'s' * (summary.knowledge_bases != 1)}, "
        f"{summary.documents} document{'s' * (summary.documents != 1)}, "
        f"{summary.chunks} passage{'s' * (summary.chunks != 1)}"
    )
