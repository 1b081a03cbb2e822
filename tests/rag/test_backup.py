"""Backups of a live embedded store: never a half-written ingest in an archive; retention; archive checks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rag.backup import BackupError, prune, restore_archive, snapshot, write_archive
from rag.chroma import ChromaStore, open_client
from rag.engine import Engine
from rag.gate import WriteGate
from tests.conftest import EngineFactory

KB = "kb-backup"
VPN = (
    b"# VPN guide\n\n## Certificates\n\nThe VPN client certificate expires every 90 days. Renew it from the "
    b"self-service portal under Security > Certificates.\n"
)
PETS = b"Office pets policy.\n\nDogs are welcome in the office on Fridays if they are house-trained.\n"


class _PausingStore(ChromaStore):
    """Pauses an ingest between writing its chunks and activating them, and a snapshot mid-copy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adding = threading.Event()  # an ingest reached the store
        self.written = threading.Event()  # its chunks are written, not yet active
        self.proceed = threading.Event()
        self.copying = threading.Event()  # a snapshot is copying files
        self.copy_proceed = threading.Event()
        self.proceed.set()
        self.copy_proceed.set()

    def add_chunks(self, kb: str, **kwargs: Any) -> None:
        self.adding.set()
        super().add_chunks(kb, **kwargs)

    def activate(self, kb: str, info: Any) -> None:
        self.written.set()
        assert self.proceed.wait(30)
        super().activate(kb, info)

    @contextmanager
    def quiesced(self) -> Iterator[None]:
        with super().quiesced():
            self.copying.set()
            assert self.copy_proceed.wait(30)
            yield


def _pausing_engine(make_engine: EngineFactory, tmp_path: Path) -> tuple[Engine, _PausingStore, Path]:
    source = tmp_path / "live"
    store = _PausingStore(open_client(persist_directory=str(source), host=None, port=0), prefix="t")
    return make_engine(store=store), store, source


def _open_archive(archive: Path, where: Path) -> ChromaStore:
    """The store an archive holds, restored into `where` and opened with Chroma."""
    restore_archive(archive, where)
    return ChromaStore(open_client(persist_directory=str(where), host=None, port=0), prefix="t")


def _contents(store: ChromaStore) -> tuple[list[str], int, int]:
    """Document names, the passages their manifests promise, and the passages really stored."""
    docs = store.documents(KB)
    return [d.name for d in docs], sum(d.chunks for d in docs), store.chunk_count(KB)


async def test_a_backup_waits_for_an_ingest_under_way_and_holds_all_of_it(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine, store, source = _pausing_engine(make_engine, tmp_path)
    await engine.ingest(KB, "vpn.md", VPN)
    store.proceed.clear()
    store.written.clear()
    ingest = asyncio.create_task(engine.ingest(KB, "pets.txt", PETS))
    assert await asyncio.to_thread(store.written.wait, 30)  # pets' chunks written, not yet active

    backups = tmp_path / "backups"
    backup = asyncio.create_task(snapshot(engine, source=source, backup_dir=backups, retention_days=30))
    await asyncio.sleep(0.5)
    assert not backup.done() and not store.copying.is_set()  # waiting for the ingest
    assert not [p for p in backups.rglob("*") if p.is_file()]  # nothing copied yet
    store.proceed.set()
    await ingest
    result = await backup

    restored = _open_archive(result.backup.path, tmp_path / "restored")
    names, promised, stored = _contents(restored)
    assert names == ["pets.txt", "vpn.md"]
    assert stored == promised  # no chunk without its manifest entry, none missing
    restored.close()


async def test_an_ingest_waits_for_a_backup_copying_while_searches_go_on(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine, store, source = _pausing_engine(make_engine, tmp_path)
    await engine.ingest(KB, "vpn.md", VPN)
    store.copy_proceed.clear()
    backups = tmp_path / "backups"
    backup = asyncio.create_task(snapshot(engine, source=source, backup_dir=backups, retention_days=30))
    assert await asyncio.to_thread(store.copying.wait, 30)

    store.adding.clear()
    ingest = asyncio.create_task(engine.ingest(KB, "pets.txt", PETS))
    passages = await engine.search(KB, "When does the VPN certificate expire?")
    assert passages and passages[0].document == "vpn.md"  # questions are answered meanwhile
    await asyncio.sleep(0.3)
    assert not store.adding.is_set() and not ingest.done()  # the ingest has not touched the store
    store.copy_proceed.set()
    result = await backup
    await ingest

    restored = _open_archive(result.backup.path, tmp_path / "restored")
    assert _contents(restored)[0] == ["vpn.md"]  # the archive is the store as it was before the ingest
    restored.close()
    assert [d.name for d in await engine.documents(KB)] == ["pets.txt", "vpn.md"]


def test_a_waiting_snapshot_goes_before_writes_that_arrive_after_it() -> None:
    gate = WriteGate()
    order: list[str] = []
    writing, finish = threading.Event(), threading.Event()

    def first_write() -> None:
        with gate.shared():
            writing.set()
            assert finish.wait(10)
            order.append("first write")

    def run(name: str, hold: Any) -> threading.Thread:
        def body() -> None:
            with hold():
                order.append(name)

        thread = threading.Thread(target=body)
        thread.start()
        return thread

    first = threading.Thread(target=first_write)
    first.start()
    assert writing.wait(10)
    snap = run("snapshot", gate.exclusive)
    while not gate._waiting:  # the snapshot is queued behind the first write
        time.sleep(0.01)
    later = run("later write", gate.shared)
    time.sleep(0.2)
    assert order == []  # nobody passes a write under way, and the later write waits for the snapshot
    finish.set()
    for thread in (first, snap, later):
        thread.join(10)
    assert order == ["first write", "snapshot", "later write"]


def test_retention_deletes_archives_older_than_the_period_and_nothing_else(tmp_path: Path) -> None:
    names = [
        "threadwise-backup-20250101T020000Z.tar.gz",  # 40 days old
        "threadwise-backup-20250109T020000Z.tar.gz",  # 32 days old
        "threadwise-backup-20250113T020000Z.tar.gz",  # 28 days old
        "threadwise-backup-20250210T020000Z-1.tar.gz",  # today, second of the second
        "notes.txt",
        "my-own-backup.tar.gz",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = prune(tmp_path, retention_days=30, now=datetime(2025, 2, 10, 3, 0, tzinfo=UTC))
    assert [p.name for p in removed] == names[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def _empty_chroma_store(folder: Path) -> None:
    import chromadb

    chromadb.PersistentClient(
        path=str(folder), settings=chromadb.Settings(anonymized_telemetry=False)
    ).close()


def test_an_archive_round_trips_every_file_and_skips_the_lock(tmp_path: Path) -> None:
    source = tmp_path / "store"
    (source / "seg").mkdir(parents=True)
    _empty_chroma_store(source)  # a restore checks that the database is a Chroma store
    (source / "seg" / "data_level0.bin").write_bytes(bytes(range(256)) * 100)
    (source / ".threadwise.lock").write_text("123")
    backup = write_archive(source, tmp_path / "b", now=datetime(2025, 3, 1, 2, 0, 5, tzinfo=UTC))
    assert backup.path.name == "threadwise-backup-20250301T020005Z.tar.gz"
    again = write_archive(source, tmp_path / "b", now=datetime(2025, 3, 1, 2, 0, 5, tzinfo=UTC))
    assert again.path.name == "threadwise-backup-20250301T020005Z-1.tar.gz"  # never overwrites

    target = tmp_path / "target"
    target.mkdir()
    (target / "old.bin").write_text("replaced")
    restored = restore_archive(backup.path, target)
    assert restored.files == 2 and restored.taken_at == datetime(2025, 3, 1, 2, 0, 5, tzinfo=UTC)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "chroma.sqlite3",
        "seg/data_level0.bin",
    ]
    assert (target / "seg" / "data_level0.bin").read_bytes() == bytes(range(256)) * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "store", "target"]  # no staging left


@pytest.mark.parametrize("index", ["[]", '"export"', "null", '{"format": 1, "knowledge_bases": "all"}'])
def test_an_export_whose_index_is_not_an_object_is_refused_and_changes_nothing(
    tmp_path: Path, index: str
) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "export.json").write_text(index)
    bad = write_archive(export, tmp_path / "b", kind="export").path  # its checksums agree
    target = tmp_path / "target"
    target.mkdir()
    (target / "kept.bin").write_text("as it was")

    with pytest.raises(BackupError, match=r"is not a usable threadwise backup: its export\.json"):
        restore_archive(bad, target, prefix="t")
    assert [p.name for p in target.iterdir()] == ["kept.bin"]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="There is no backup file"):
        restore_archive(tmp_path / "nope.tar.gz", tmp_path / "store")
    assert not (tmp_path / "store").exists()
