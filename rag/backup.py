"""Backups: timestamped `.tar.gz` archives, checked before a restore, of one of two kinds.

- `embedded`: the embedded store's directory files under `data/`. A live store is copied while its
  writes are held (`snapshot`): Chroma commits each write to SQLite before it returns and keeps the
  vector index's files consistent with it between writes, so a quiet directory is a store Chroma can
  open as is.
- `export`: every knowledge base of a Chroma server, read through its API while others write to it
  (rag/export.py says how that stays consistent), as files under `data/` (`backup_server`).

Either way the archive ends with `threadwise-backup.json`: the format, the kind, when it was taken, and
every file's size and SHA-256. A restore unpacks into a new directory, checks every file against the
manifest (and the SQLite database, or the export's counts), and only then changes anything: an
embedded store is replaced by swapping directories (one atomic exchange on Linux), a server's knowledge
bases are replaced in place (`restore_to_server`). Either kind restores into either set-up.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import structlog

from rag.chroma import ChromaStore, check_store, hold_directory, is_store, open_unlocked, store_files
from rag.errors import UserFacingError
from rag.export import PAGE, BetweenPages, ExportError, ExportSummary, export_store, load_store, read_index
from rag.gate import run_to_end
from rag.store import VectorStore

if TYPE_CHECKING:
    from rag.engine import Engine

log = structlog.get_logger(__name__)

FORMAT = 1
MANIFEST = "threadwise-backup.json"
EMBEDDED = "embedded"  # the embedded store's files
EXPORT = "export"  # knowledge bases read through Chroma's API (a server)
_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^threadwise-backup-(\d{8}T\d{6}Z)(?:-\d+)?\.tar\.gz$")
_PARTIAL = re.compile(r"^\.threadwise-backup-.*\.partial$")
_CHUNK = 1 << 20


class BackupError(UserFacingError):
    """A backup could not be taken or restored; the message says why and what was (not) changed."""


@dataclass(frozen=True)
class Backup:
    path: Path
    taken_at: datetime
    files: int
    data_bytes: int  # the store's size, uncompressed
    kind: str = EMBEDDED


@dataclass(frozen=True)
class BackupResult:
    backup: Backup
    seconds: float
    held_seconds: float  # how long writes waited for the copy
    removed: tuple[Path, ...]  # archives older than the retention period, deleted
    contents: ExportSummary | None = None  # what a server export holds


# -- taking -----------------------------------------------------------------------------------------
async def snapshot(engine: Engine, *, source: Path, backup_dir: Path, retention_days: int) -> BackupResult:
    """Back up a live embedded store: writes under way finish first, new ones wait while its files
    are copied (a plain copy, fast); compressing the copy into the archive happens after."""
    started = time.perf_counter()
    staging = await asyncio.to_thread(_staging, backup_dir)
    try:
        taken, held = await run_to_end(_copy_held, engine, source, staging)
        backup = await run_to_end(write_archive, staging, backup_dir, now=taken)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    removed = await asyncio.to_thread(prune, backup_dir, retention_days=retention_days)
    return BackupResult(backup, time.perf_counter() - started, held, tuple(removed))


# The embedded store's directory to ourselves, without opening it: StoreInUseError when another
# process has it (the at-rest backup and the restore of an embedded store run inside it).
hold_store = hold_directory


def snapshot_at_rest(*, source: Path, backup_dir: Path, retention_days: int) -> BackupResult:
    """Back up an embedded store no process has open (the caller holds it: hold_store)."""
    started = time.perf_counter()
    if not is_store(source):
        raise BackupError(f"There is no store in {source} to back up.")
    backup = write_archive(source, backup_dir)
    removed = prune(backup_dir, retention_days=retention_days)
    seconds = time.perf_counter() - started
    return BackupResult(backup, seconds, seconds, tuple(removed))


def backup_server(
    store: VectorStore,
    *,
    backup_dir: Path,
    retention_days: int,
    page: int = PAGE,
    between_pages: BetweenPages | None = None,
) -> BackupResult:
    """Export every knowledge base of a store other processes write to (a server) into an archive.
    `page`: records per request; `between_pages`: called between two pages of chunks (tests)."""
    started = time.perf_counter()
    staging = _staging(backup_dir)
    try:
        taken = datetime.now(UTC)
        try:
            contents = export_store(store, folder=staging, page=page, between_pages=between_pages)
        except ExportError as exc:
            raise BackupError(exc.message) from None
        backup = write_archive(staging, backup_dir, now=taken, kind=EXPORT)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    removed = prune(backup_dir, retention_days=retention_days)
    return BackupResult(backup, time.perf_counter() - started, 0.0, tuple(removed), contents)


def _staging(backup_dir: Path) -> Path:
    """A new hidden folder in `backup_dir` for what an archive is made of (pruned if left behind)."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".threadwise-backup-", suffix=".partial", dir=backup_dir))


def _copy_held(engine: Engine, source: Path, dest: Path) -> tuple[datetime, float]:
    """Copy the store's files into `dest` while nothing changes them; returns when, and how long
    writes were held (from the moment they were all finished)."""
    with engine.held_still() as started:
        taken = datetime.now(UTC)
        for path in store_files(source):
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        held = time.perf_counter() - started
    return taken, held


def write_archive(
    source: Path, backup_dir: Path, *, now: datetime | None = None, kind: str = EMBEDDED
) -> Backup:
    """Archive the files under `source` (regular files; an embedded store's lock left out) into a
    new `threadwise-backup-<UTC time>.tar.gz`.

    Written under a hidden `.partial` name and renamed when complete, so an archive with the
    proper name is always whole.
    """
    taken_at = (now or datetime.now(UTC)).replace(microsecond=0)
    backup_dir.mkdir(parents=True, exist_ok=True)
    final = _free_name(backup_dir, taken_at)
    partial = backup_dir / f".{final.name}.partial"
    listed: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
            for path in store_files(source):
                rel = path.relative_to(source).as_posix()
                info = tar.gettarinfo(str(path), arcname=f"data/{rel}")
                with path.open("rb") as raw:
                    reader = _Hashing(raw)
                    tar.addfile(info, reader)
                listed[rel] = {"size": info.size, "sha256": reader.sha.hexdigest()}
            manifest = {"format": FORMAT, "kind": kind, "taken_at": taken_at.isoformat(), "files": listed}
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        _fsync(partial)
        os.replace(partial, final)
        _fsync(backup_dir)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    size = sum(int(f["size"]) for f in listed.values())
    log.info("backup_written", path=str(final), kind=kind, files=len(listed), data_bytes=size)
    return Backup(final, taken_at, len(listed), size, kind)


def prune(backup_dir: Path, *, retention_days: int, now: datetime | None = None) -> list[Path]:
    """Delete archives taken more than `retention_days` ago (by the time in their name), and
    `.partial` files and copies a crash left behind (a day old: none is still being written)."""
    if not backup_dir.is_dir():
        return []
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    removed = []
    for path in sorted(backup_dir.iterdir()):
        taken = taken_at(path)
        stale_partial = _PARTIAL.match(path.name) and path.stat().st_mtime < (now.timestamp() - 86400)
        if (taken is not None and taken < cutoff) or stale_partial:
            if path.is_dir():  # a staging copy (snapshot)
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("backups_pruned", removed=[p.name for p in removed], retention_days=retention_days)
    return removed


def newest_backup(backup_dir: Path) -> datetime | None:
    """When the newest archive in `backup_dir` was taken (by its name); None when there is none."""
    if not backup_dir.is_dir():
        return None
    return max(filter(None, map(taken_at, backup_dir.iterdir())), default=None)


def taken_at(path: Path) -> datetime | None:
    """When the archive at `path` was taken, from its name; None for any other file."""
    match = _NAME.match(path.name)
    return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC) if match else None


def _free_name(backup_dir: Path, when: datetime) -> Path:
    stem = f"threadwise-backup-{when.strftime(_STAMP)}"
    for n in range(1000):
        path = backup_dir / (f"{stem}.tar.gz" if n == 0 else f"{stem}-{n}.tar.gz")
        if not path.exists() and not (backup_dir / f".{path.name}.partial").exists():
            return path
    raise BackupError(f"Too many backups taken at {when.isoformat()} in {backup_dir}.")


class _Hashing:
    """A file reader that hashes what tarfile reads from it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha.update(data)
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# -- restoring --------------------------------------------------------------------------------------
def restore_archive(archive: Path, target: Path, *, prefix: str | None = None) -> Backup:
    """Replace the embedded store directory `target` with the archive's contents. The caller holds
    `target`'s directory lock. Raises BackupError, leaving `target` as it was, when the archive is not
    whole. An export (of a server) becomes a new store, loaded through Chroma, under `prefix`
    (CHROMA_COLLECTION_NAME)."""
    _require(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restoring-", dir=target.parent))
    built: Path | None = None
    try:
        staging.chmod(target.stat().st_mode & 0o7777 if target.exists() else 0o755)
        backup = unpack(archive, staging, prefix=prefix)
        if backup.kind == EXPORT:
            if prefix is None:
                raise BackupError(f"{archive} is an export of a Chroma server: say which collection prefix.")
            built = Path(tempfile.mkdtemp(prefix=f".{target.name}.loading-", dir=target.parent))
            built.chmod(staging.stat().st_mode)
            _load_into_directory(archive, staging, built, prefix=prefix)
        previous = _swap(built or staging, target)
    except BaseException:
        for leftover in (staging, built):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
        raise
    for leftover in (previous, staging if built else None):
        if leftover is not None:
            shutil.rmtree(leftover, ignore_errors=True)
    log.info("backup_restored", archive=str(archive), target=str(target), kind=backup.kind)
    return backup


def restore_to_server(
    archive: Path, store: VectorStore, *, prefix: str, work_dir: Path
) -> tuple[Backup, ExportSummary]:
    """Make the knowledge bases of a store other processes use (a server) what the archive holds
    (either kind; an embedded one's knowledge bases under `prefix`, CHROMA_COLLECTION_NAME). Nothing
    is changed unless the whole archive checks out; the unpacked copy is made in a temporary
    directory under `work_dir`."""
    _require(archive)
    work_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".threadwise-restore-", dir=work_dir))
    try:
        backup = unpack(archive, staging, prefix=prefix)
        folder = staging
        if backup.kind == EMBEDDED:  # read its knowledge bases the way a server's are read
            folder = staging / ".export"
            _export_directory(archive, staging, folder, prefix=prefix)
        index = _checked_index(archive, folder)
        try:
            loaded = load_store(store, folder=folder, index=index)
        except ExportError as exc:
            raise BackupError(exc.message) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "backup_restored", archive=str(archive), kind=backup.kind, knowledge_bases=loaded.knowledge_bases
    )
    return backup, loaded


def unpack(archive: Path, dest: Path, *, prefix: str | None = None) -> Backup:
    """Unpack an archive's data into `dest` and check all of it; raises BackupError if anything is off.

    `prefix` (CHROMA_COLLECTION_NAME): an embedded store must hold knowledge bases under it, or none.
    """
    _require(archive)
    manifest, found = _extract(archive, dest)
    _check(archive, manifest, found)
    kind = str(manifest.get("kind", EMBEDDED))  # archives from before server exports are embedded
    if kind == EMBEDDED:
        problem = check_store(dest, prefix=prefix)
        if problem is not None:
            raise _unusable(archive, problem)
    elif kind == EXPORT:
        _checked_index(archive, dest)
    else:
        raise _unusable(archive, f"it is of kind {kind!r}; this version reads {EMBEDDED} and {EXPORT}")
    when = _taken(archive, manifest)
    return Backup(archive, when, len(found), sum(size for size, _ in found.values()), kind)


def _taken(archive: Path, manifest: dict[str, Any]) -> datetime:
    """The manifest's `taken_at`, in UTC (it is written in UTC; one without a zone is read as UTC)."""
    value = manifest.get("taken_at")
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise _unusable(archive, f"its {MANIFEST} has no valid taken_at ({value!r:.40})")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _require(archive: Path) -> None:
    if not archive.is_file():
        raise BackupError(f"There is no backup file {archive}.")


def _checked_index(archive: Path, folder: Path) -> dict[str, Any]:
    try:
        return read_index(folder)
    except ExportError as exc:
        raise _unusable(archive, exc.message) from None


def _load_into_directory(archive: Path, export: Path, store: Path, *, prefix: str) -> None:
    """A new embedded store in `store` holding the export in `export`."""
    target = ChromaStore(open_unlocked(store), prefix=prefix)
    try:
        load_store(target, folder=export, index=_checked_index(archive, export))
    except ExportError as exc:
        raise BackupError(exc.message) from None
    finally:
        target.close()


def _export_directory(archive: Path, store: Path, folder: Path, *, prefix: str) -> None:
    """The knowledge bases of the embedded store in `store` (unpacked, no one else's) into `folder`."""
    source = ChromaStore(open_unlocked(store), prefix=prefix)
    try:
        export_store(source, folder=folder)
    except ExportError as exc:
        raise _unusable(archive, exc.message) from None
    finally:
        source.close()


def _unusable(archive: Path, reason: str) -> BackupError:
    return BackupError(f"{archive} is not a usable threadwise backup: {reason}. Nothing was changed.")


def _extract(archive: Path, dest: Path) -> tuple[dict[str, Any], dict[str, tuple[int, str]]]:
    """Unpack the `data/` files into `dest`, hashing them; returns the manifest and what was found."""
    manifest: dict[str, Any] | None = None
    found: dict[str, tuple[int, str]] = {}
    try:
        with gzip.open(archive) as whole:  # to its end: its checksum covers bytes tar never reads
            while whole.read(_CHUNK):
                pass
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name == MANIFEST and member.isfile():
                    manifest = _read_manifest(archive, tar, member)
                    continue
                rel = _data_path(archive, member.name)
                if member.isdir():
                    (dest / rel).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise _unusable(archive, f"{member.name} is not a regular file")
                found[rel.as_posix()] = _unpack(tar, member, dest / rel)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _unusable(archive, f"it is damaged or incomplete ({exc or type(exc).__name__})") from None
    if manifest is None:
        raise _unusable(archive, f"it has no {MANIFEST} (not a threadwise backup, or cut short)")
    return manifest, found


def _read_manifest(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    stream = tar.extractfile(member)
    try:
        manifest = json.loads(stream.read()) if stream else None
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise _unusable(archive, f"its {MANIFEST} is damaged")
    if manifest.get("format") != FORMAT:
        raise _unusable(archive, f"it is in format {manifest.get('format')!r}; this version reads {FORMAT}")
    return manifest


def _data_path(archive: Path, name: str) -> Path:
    parts = PurePosixPath(name).parts
    if len(parts) < 2 or parts[0] != "data" or any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise _unusable(archive, f"it contains {name!r}, outside data/")
    return Path(*parts[1:])


def _unpack(tar: tarfile.TarFile, member: tarfile.TarInfo, out: Path) -> tuple[int, str]:
    stream = tar.extractfile(member)
    assert stream is not None  # a regular file always has one
    out.parent.mkdir(parents=True, exist_ok=True)
    sha, size = hashlib.sha256(), 0
    with stream, out.open("wb") as dst:
        while block := stream.read(_CHUNK):
            sha.update(block)
            size += len(block)
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    return size, sha.hexdigest()


def _check(archive: Path, manifest: dict[str, Any], found: dict[str, tuple[int, str]]) -> None:
    listed: dict[str, Any] = manifest["files"]
    missing = sorted(set(listed) - set(found))
    extra = sorted(set(found) - set(listed))
    if missing or extra:
        what = f"data/{missing[0]} is missing" if missing else f"data/{extra[0]} is not in its manifest"
        raise _unusable(archive, what)
    for rel, (size, sha) in sorted(found.items()):
        entry = listed[rel]
        if not isinstance(entry, dict) or entry.get("size") != size or entry.get("sha256") != sha:
            raise _unusable(archive, f"data/{rel} does not match its checksum")


def _swap(new: Path, target: Path) -> Path | None:
    """Put `new` in place of `target`; returns where the replaced directory now is (None if none)."""
    _fsync(new)
    if not target.exists():
        os.rename(new, target)
        _fsync(target.parent)
        return None
    if _exchange(new, target):  # one step: `target` is the old or the new directory, never neither
        _fsync(target.parent)
        return new
    old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
    os.rename(target, old)
    os.rename(new, target)
    _fsync(target.parent)
    return old


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): swap two paths atomically. False where the system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk (best effort on directories)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
