"""The vector store port: what the engine, search, export and backup need of a store.

A store keeps, per knowledge base, the chunks (text, vector, metadata) and a manifest of documents
(one DocumentInfo each, naming the document's active version). rag/chroma/ is the implementation;
how collections are named and which files hold them is known there alone.

Atomic replacement, which every implementation keeps: a new version's chunks are written under a fresh
version id while the manifest still names the old version, so searches (which keep only chunks of
active versions) see the old document; one manifest write (`activate`) then makes the new version the
active one, and only after that are the old version's chunks deleted. A failed ingest deletes its own
chunks and never touches the manifest. Who may see a document (its scope, rag/scopes.py) is its
manifest entry's alone: a new scope is one manifest write, and searches restrict themselves to the
versions their place may see (`nearest(within=…)`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rag.types import Chunk, DocumentInfo

Metadata = dict[str, Any]


@dataclass(frozen=True)
class StoredChunk:
    id: str
    text: str
    document: str
    version: str
    locator: str
    url: str | None
    similarity: float = 0.0


@dataclass(frozen=True)
class Records:
    """Stored records as an export carries them: a manifest entry has no text, and its metadata
    is a DocumentInfo's fields; a chunk's metadata holds at least `document` and `version`."""

    ids: list[str]
    vectors: np.ndarray  # one float32 row per record
    texts: list[str | None]
    metadatas: list[Metadata]


class VectorStore(Protocol):
    """Synchronous access to the chunks and manifests of every knowledge base in one store."""

    # True when no other process can write to this store (it holds it alone): then versions no
    # manifest names are leftovers of a killed ingest, never another process's ingest under way.
    exclusive: bool

    def ping(self) -> None:
        """Raises when the store does not answer."""

    def close(self) -> None:
        """Release the store's files and connections."""

    def quiesced(self) -> contextlib.AbstractContextManager[None]:
        """While held, and no write is under way, the store's files on disk do not change."""

    # -- knowledge bases and manifests
    def knowledge_bases(self) -> list[str]:
        """Every knowledge base with a manifest, sorted."""

    def drop(self, kb: str) -> None: ...

    def generation(self, kb: str) -> str:
        """Changes whenever the manifest of `kb` changes, in any process."""

    def documents(self, kb: str) -> list[DocumentInfo]:
        """The manifest, by name (case-insensitive)."""

    def document(self, kb: str, name: str) -> DocumentInfo | None: ...

    def activate(self, kb: str, info: DocumentInfo) -> None:
        """Make `info.version` the searchable version of its document (one atomic write)."""

    def deactivate(self, kb: str, name: str) -> None: ...

    # -- chunks
    def add_chunks(
        self,
        kb: str,
        *,
        document: str,
        version: str,
        chunks: Sequence[Chunk],
        embeddings: np.ndarray,
        url: str | None,
    ) -> None:
        """Write a version's chunks; the chunk of index i gets the id `version:i` (see version_of)."""

    def delete_version(self, kb: str, version: str) -> None: ...

    def embeddings_by_hash(self, kb: str, version: str) -> dict[str, np.ndarray]:
        """A version's vectors by the SHA-256 of their chunk's text (reused by the next version)."""

    def all_chunks(self, kb: str) -> tuple[list[str], np.ndarray]:
        """Every chunk's text and vector (benchmarks)."""

    def chunk_count(self, kb: str) -> int: ...

    def nearest(
        self, kb: str, vector: np.ndarray, n: int, *, within: Mapping[str, int] | None = None
    ) -> list[tuple[str, float]]:
        """The `n` chunks nearest to `vector`: (id, cosine similarity), nearest first. `within`: only
        chunks of these document versions (version -> its number of chunks), searched inside the
        store, so that the chunks of other documents take no place among the `n`."""

    def chunks_by_id(self, kb: str, ids: Sequence[str]) -> list[StoredChunk]: ...

    def chunks_of_versions(self, kb: str, versions: Sequence[str]) -> list[StoredChunk]:
        """Every chunk of these document versions (texts and metadata, no vectors)."""

    def unreferenced_versions(self, kb: str) -> set[str]:
        """Versions that have chunks but that the manifest does not name (now)."""

    # -- export and import of a whole knowledge base
    def manifest_records(self, kb: str) -> tuple[Records, Metadata]:
        """The manifest in one consistent read, and the knowledge base's own metadata."""

    def chunk_records(self, kb: str, *, page: int) -> Iterator[Records]:
        """Every chunk, `page` at a time. Other writers may be at work: a record may be missed or
        seen twice, which the caller's counts catch."""

    def load(
        self, kb: str, *, chunks: Iterable[Records], manifest: Iterable[Records], metadata: Metadata
    ) -> None:
        """Make `kb` hold exactly these records, the way an ingest replaces a document: chunks first,
        then the manifest, then the chunks of versions it no longer names are deleted. Stopped midway,
        every document is whole (old or new); running it again finishes it."""


def new_version() -> str:
    return uuid.uuid4().hex[:16]


def version_of(chunk_id: str) -> str:
    """The document version a chunk belongs to: its id is `version:index` (VectorStore.add_chunks)."""
    return chunk_id.split(":", 1)[0]


def sweep(store: VectorStore, kb: str) -> int:
    """Delete chunks of versions that are not active (left by an ingest that was killed).

    Only safe while no other process can be writing: with a shared store another worker's in-flight
    ingest looks exactly like such leftovers (see LeftoverSweeper).
    """
    if not store.exclusive:
        return 0
    stale = store.unreferenced_versions(kb)
    for version in stale:
        store.delete_version(kb, version)
    return len(stale)


class LeftoverSweeper:
    """Sweeps a store that other processes write to (a Chroma server): a version's chunks are deleted
    once this sweeper has seen the version unreferenced by the manifest in two sweeps at least `after`
    seconds apart.

    An ingest writes its version's chunks, then names the version in the manifest; a version still
    unnamed `after` seconds after it was first seen belongs to an ingest that died (or was stopped)
    between the two, provided `after` bounds that time. Restores, which write chunks before the
    manifest too, are covered the same way. No clock of another machine is trusted: ages are this
    process's own observations, so the first sweep of a process deletes nothing.
    """

    def __init__(self, store: VectorStore, *, after: float, clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._after = after
        self._clock = clock
        self._first_seen: dict[tuple[str, str], float] = {}

    def sweep(self) -> int:
        """One pass over every knowledge base; returns how many versions were deleted."""
        now = self._clock()
        seen: dict[tuple[str, str], float] = {}
        removed = 0
        for kb in self._store.knowledge_bases():
            unnamed = self._store.unreferenced_versions(kb)
            due = set()
            for version in unnamed:
                first = self._first_seen.get((kb, version), now)
                if now - first >= self._after:
                    due.add(version)
                else:
                    seen[(kb, version)] = first
            # Read the manifest again just before deleting: never delete a version named meanwhile.
            for version in due - {d.version for d in self._store.documents(kb)}:
                self._store.delete_version(kb, version)
                removed += 1
        self._first_seen = seen  # versions named or deleted since are forgotten
        return removed
