"""Backups of a Chroma server (`chroma run`) through its API, while another process writes to it.

The interleaving is made deterministic by the export's hook between two pages of chunks: there the
test plays the other process (a document replaced, an ingest half-written), then lets the export go on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.backup import (
    BackupError,
    BackupResult,
    backup_server,
    restore_archive,
    restore_to_server,
    write_archive,
)
from rag.chroma import ChromaStore, open_client
from rag.engine import Engine
from rag.store import new_version
from rag.types import Chunk
from tests.conftest import EngineFactory
from tests.processes import Processes

pytestmark = pytest.mark.slow

KB = "kb-server"
PREFIX = "t"
QUESTION = "How often does the VPN certificate expire?"
VPN = (
    b"# VPN guide\n\n## Certificates\n\nThe VPN client certificate expires every 90 days. Renew it from the "
    b"self-service portal under Security > Certificates.\n"
)
VPN_V2 = VPN.replace(b"90 days", b"45 days")
PETS = b"Office pets policy.\n\nDogs are welcome in the office on Fridays if they are house-trained.\n"


@dataclass
class Server:
    port: int
    engine: Engine  # on the server, as a worker's
    store: ChromaStore  # the engine's

    def client(self) -> Any:
        return open_client(persist_directory="unused", host="127.0.0.1", port=self.port)

    def other(self) -> ChromaStore:
        """The server's store as another process (the backup command) opens it."""
        return ChromaStore(self.client(), prefix=PREFIX)


@pytest.fixture
async def server(tmp_path: Path, make_engine: EngineFactory) -> AsyncIterator[Server]:
    with Processes(tmp_path / "processes") as procs:
        _, port = await procs.chroma()
        store = ChromaStore(
            open_client(persist_directory="unused", host="127.0.0.1", port=port), prefix=PREFIX
        )
        engine = make_engine(store=store)
        await engine.ingest(KB, "vpn.md", VPN, uploader="U1")
        await engine.ingest(KB, "pets.txt", PETS, uploader="U2")
        yield Server(port, engine, store)


async def _backup(server: Server, backup_dir: Path, **options: Any) -> BackupResult:
    return await asyncio.to_thread(
        backup_server, server.other(), backup_dir=backup_dir, retention_days=30, **options
    )


def _restored(archive: Path, where: Path) -> ChromaStore:
    """The knowledge bases an archive holds, restored into a new embedded store."""
    restore_archive(archive, where, prefix=PREFIX)
    return ChromaStore(open_client(persist_directory=str(where), host=None, port=0), prefix=PREFIX)


def _whole(store: ChromaStore, kb: str) -> dict[str, int]:
    """Each document and its passages; fails unless every passage belongs to an active version."""
    docs = store.documents(kb)
    chunks = store.chunks_of_versions(kb, [d.version for d in docs])
    assert store.chunk_count(kb) == len(chunks) == sum(d.chunks for d in docs)
    return {d.name: d.chunks for d in docs}


async def test_an_export_under_concurrent_writes_holds_no_half_written_document(
    server: Server, tmp_path: Path
) -> None:
    engine, loop = server.engine, asyncio.get_running_loop()
    half = new_version()
    calls: list[tuple[int, int]] = []

    def other_process(kb: str, attempt: int, page: int) -> None:
        calls.append((attempt, page))
        if (attempt, page) != (1, 0):
            return
        # Between the export's first two pages another worker replaces vpn.md (the old version's
        # chunks are deleted) and is midway through another ingest (chunks written, not active).
        asyncio.run_coroutine_threadsafe(engine.ingest(KB, "vpn.md", VPN_V2, uploader="U1"), loop).result()
        server.store.add_chunks(
            KB,
            document="half.md",
            version=half,
            chunks=[Chunk(text="Half of a document.", index=0)],
            embeddings=np.ones((1, 384), dtype=np.float32),
            url=None,
        )

    result = await _backup(server, tmp_path / "backups", page=1, between_pages=other_process)

    assert result.contents is not None and result.contents.rereads == 1  # vpn.md changed: read again
    assert (result.contents.knowledge_bases, result.contents.documents) == (1, 2)
    assert [attempt for attempt, _ in calls].count(1) < len(calls)  # the second read went to the end
    assert result.backup.kind == "export"
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == [result.backup.path.name]
    store = _restored(result.backup.path, tmp_path / "restored")
    assert _whole(store, KB) == {"pets.txt": 1, "vpn.md": result.contents.chunks - 1}
    (vpn,) = [d for d in store.documents(KB) if d.name == "vpn.md"]
    texts = [c.text for c in store.chunks_of_versions(KB, [vpn.version])]
    assert any("45 days" in t for t in texts)  # the version the manifest named when it was read
    assert store.chunks_of_versions(KB, [half]) == []  # the half-written ingest is not in it
    store.close()


async def test_a_knowledge_base_that_changes_during_every_read_stops_the_backup_clearly(
    server: Server, tmp_path: Path
) -> None:
    engine, loop = server.engine, asyncio.get_running_loop()
    versions = iter([VPN_V2, VPN] * 5)

    def replace_every_time(kb: str, attempt: int, page: int) -> None:
        if page == 0:
            replace = engine.ingest(KB, "vpn.md", next(versions), uploader="U1")
            asyncio.run_coroutine_threadsafe(replace, loop).result()

    with pytest.raises(BackupError, match=rf"^The knowledge base {KB} changed during each of 5 reads"):
        await _backup(server, tmp_path / "backups", page=1, between_pages=replace_every_time)
    assert list((tmp_path / "backups").iterdir()) == []  # no archive, no leftovers


async def test_a_restore_replaces_the_servers_knowledge_bases_in_place(
    server: Server, tmp_path: Path, make_engine: EngineFactory
) -> None:
    engine = server.engine
    before = await engine.ask(KB, QUESTION)
    assert "90 days" in before.text
    backup = await _backup(server, tmp_path / "b")
    await engine.ingest(KB, "vpn.md", VPN_V2, uploader="U1")
    await engine.forget(KB, "pets.txt")
    await engine.ingest("kb-later", "pets.txt", PETS)
    assert "45 days" in (await engine.ask(KB, QUESTION)).text

    archive, loaded = await asyncio.to_thread(
        restore_to_server, backup.backup.path, server.other(), prefix=PREFIX, work_dir=tmp_path / "work"
    )

    assert (archive.kind, loaded.knowledge_bases, loaded.documents) == ("export", 1, 2)
    # The engine that was running all along answers from the restored knowledge base at once.
    after = await engine.ask(KB, QUESTION)
    assert (after.text, after.citations) == (before.text, before.citations)
    assert _whole(server.store, KB) == {"pets.txt": 1, "vpn.md": backup.contents.chunks - 1}  # type: ignore[union-attr]
    assert await engine.documents("kb-later") == []  # not in the backup: emptied
    assert list((tmp_path / "work").iterdir()) == []


class _FailingOnce:
    """A Chroma client that fails once when asked for the collections of one knowledge base."""

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self._name = name
        self.failed = False

    def get_or_create_collection(self, name: str, **kwargs: Any) -> Any:
        if name.startswith(self._name) and not self.failed:
            self.failed = True
            raise ConnectionError("the server went away")
        return self._client.get_or_create_collection(name, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_a_restore_stopped_midway_says_so_and_runs_again_to_the_end(
    server: Server, tmp_path: Path
) -> None:
    engine = server.engine
    await engine.ingest("kb-second", "vpn.md", VPN)
    vpn_chunks = _whole(server.store, "kb-second")["vpn.md"]
    backup = await _backup(server, tmp_path / "b")
    await engine.forget(KB, "pets.txt")
    await engine.forget("kb-second", "vpn.md")
    failing = ChromaStore(
        _FailingOnce(server.client(), f"{PREFIX}-{KB}"), prefix=PREFIX
    )  # the second, in order

    with pytest.raises(BackupError) as err:
        await asyncio.to_thread(
            restore_to_server, backup.backup.path, failing, prefix=PREFIX, work_dir=tmp_path / "w"
        )
    assert str(err.value) == (
        f"The restore stopped at the knowledge base {KB} (ConnectionError: the server went away); 1 of "
        "2 knowledge bases were done. Every document is whole, in its old or its restored version; run "
        "the same restore again to finish it."
    )
    assert [d.name for d in await engine.documents("kb-second")] == ["vpn.md"]  # the first: done
    assert [d.name for d in await engine.documents(KB)] == ["vpn.md"]  # not yet

    await asyncio.to_thread(
        restore_to_server, backup.backup.path, failing, prefix=PREFIX, work_dir=tmp_path / "w"
    )
    assert [d.name for d in await engine.documents(KB)] == ["pets.txt", "vpn.md"]
    assert _whole(server.store, "kb-second") == {"vpn.md": vpn_chunks}
    assert _whole(server.store, KB) == {"pets.txt": 1, "vpn.md": vpn_chunks}


async def test_an_export_that_is_not_whole_is_refused_before_the_server_is_touched(
    server: Server, tmp_path: Path
) -> None:
    good = await _backup(server, tmp_path / "b")
    unpacked = tmp_path / "unpacked"
    with tarfile.open(good.backup.path) as tar:
        tar.extractall(unpacked, filter="data")
    manifest = next((unpacked / "data").glob("kb-*/manifest.jsonl"))
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    records[0]["metadata"]["chunks"] += 1  # a document promising a passage the export lacks
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    bad = write_archive(unpacked / "data", tmp_path / "bad", kind="export").path  # checksums agree
    await server.engine.forget(KB, "pets.txt")

    with pytest.raises(
        BackupError, match=rf"is not a usable threadwise backup: the knowledge base {KB} in it"
    ):
        await asyncio.to_thread(
            restore_to_server, bad, server.other(), prefix=PREFIX, work_dir=tmp_path / "w"
        )
    assert [d.name for d in await server.engine.documents(KB)] == ["vpn.md"]  # untouched
    shutil.rmtree(unpacked)
