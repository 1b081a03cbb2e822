"""Sweeping a Chroma server (`chroma run`) that other processes write to: passages of versions no
manifest names are deleted only once they have stayed unnamed longer than any ingest takes to name its
version; an ingest in flight, a document that is active, and a version named meanwhile are kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag.chroma import ChromaStore, open_client
from rag.store import LeftoverSweeper
from rag.types import Chunk, DocumentInfo
from tests.processes import Processes

KB = "kb-sweep"
AFTER_S = 600.0  # an ingest names its version within this long of writing its first passage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaStore]:
    import asyncio

    root: Path = tmp_path_factory.mktemp("sweep")
    with Processes(root) as procs:
        _, port = asyncio.run(procs.chroma())
        yield ChromaStore(open_client(persist_directory="unused", host="127.0.0.1", port=port), prefix="t")


def write(store: ChromaStore, name: str, version: str, n: int) -> None:
    chunks = [Chunk(f"{name} passage {i}", i) for i in range(n)]
    vectors = np.random.default_rng(n).random((n, 8), dtype=np.float32)
    store.add_chunks(KB, document=name, version=version, chunks=chunks, embeddings=vectors, url=None)


def activate(store: ChromaStore, name: str, version: str, n: int) -> None:
    store.activate(KB, DocumentInfo(name, "0" * 64, version, n, "U1", 1.0, 10, "text"))


def versions(store: ChromaStore) -> set[str]:
    return {c.version for c in store.chunks_of_versions(KB, ["active01", "killed01", "flight01", "late0001"])}


def test_only_versions_unnamed_for_longer_than_any_ingest_are_swept(store: ChromaStore) -> None:
    write(store, "a.md", "active01", 2)
    activate(store, "a.md", "active01", 2)
    write(store, "b.md", "killed01", 3)  # an ingest killed before it named its version
    write(store, "c.md", "late0001", 2)  # an ingest that names its version between two sweeps
    clock = Clock()
    sweeper = LeftoverSweeper(store, after=AFTER_S, clock=clock)
    assert store.exclusive is False  # a server: other processes may be mid-ingest

    assert sweeper.sweep() == 0  # first seen unnamed now: it may be an ingest in flight
    write(store, "d.md", "flight01", 2)  # an ingest starts writing
    clock.now += AFTER_S - 1
    assert sweeper.sweep() == 0
    activate(store, "c.md", "late0001", 2)
    clock.now += 2  # killed01 unnamed for AFTER_S + 1; flight01 only seen since the last sweep
    assert sweeper.sweep() == 1
    assert versions(store) == {"active01", "late0001", "flight01"}

    clock.now += AFTER_S  # flight01's ingest was killed too: now it has stayed unnamed long enough
    assert sweeper.sweep() == 1
    assert versions(store) == {"active01", "late0001"}
    assert [d.name for d in store.documents(KB)] == ["a.md", "c.md"]
