"""Chroma storage: one chunk collection and one document manifest per knowledge base.

Atomic replacement: a new version's chunks are written under a fresh version id while the manifest
still names the old version, so searches (which keep only chunks of active versions) see the old
document; one manifest upsert then makes the new version the active one, and only after that are the
old version's chunks deleted. A failed ingest deletes its own chunks and never touches the manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.types import Chunk, DocumentInfo

_WRITE_BATCH = 1000


@dataclass(frozen=True)
class StoredChunk:
    id: str
    text: str
    document: str
    version: str
    locator: str
    url: str | None
    similarity: float = 0.0


SERVER_TIMEOUT_S = 60.0  # the longest a Chroma server call may take (a page of 5000 records)
SERVER_CONNECT_TIMEOUT_S = 5.0


def open_client(
    *, persist_directory: str, host: str | None, port: int, timeout: float = SERVER_TIMEOUT_S
) -> Any:
    """A Chroma client: HttpClient when `host` is set, else an embedded PersistentClient.

    The embedded store is not safe across processes, so this process takes an exclusive lock on
    the directory first; a second process is told what to do instead of corrupting the data.
    """
    import chromadb

    settings = chromadb.Settings(anonymized_telemetry=False)
    if host:
        return _server_client(host, port, settings, timeout=timeout)
    path = Path(persist_directory)
    path.mkdir(parents=True, exist_ok=True)
    _lock_directory(path)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def _server_client(host: str, port: int, settings: Any, *, timeout: float) -> Any:
    """An HttpClient whose calls give up after `timeout` seconds.

    chromadb's own HTTP session never times out: a server that stops answering without closing its
    connections (a paused process, a network partition) would hang every call, and the threads
    making them, for good, and /ready with them long after the server is back. A server that does
    not answer at start-up stops it with what to fix, as REDIS_URL does.
    """
    import chromadb
    import httpx

    where = f"CHROMA_HOST={host!r} CHROMA_PORT={port}"
    base = host.rstrip("/") if "://" in host else f"http://{host}:{port}"
    limits = httpx.Timeout(timeout, connect=min(timeout, SERVER_CONNECT_TIMEOUT_S))
    try:
        httpx.get(f"{base}/api/v2/heartbeat", timeout=limits).raise_for_status()
        client = chromadb.HttpClient(host=host, port=port, settings=settings)
    except (httpx.HTTPError, ValueError) as exc:  # chromadb: ValueError("Could not connect…")
        raise ConfigError(
            f"{where}: the Chroma server at {host}:{port} does not answer ({type(exc).__name__}: {exc}). "
            f"Start it (`chroma run --path DIR --host 0.0.0.0 --port {port}`), or correct CHROMA_HOST and "
            "CHROMA_PORT, or unset CHROMA_HOST to keep the store in this process"
        ) from None
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = limits
    return client


_held_locks: dict[str, int] = {}


class StoreInUseError(ConfigError):
    """Another process holds the embedded store; `owner` is its process id as it wrote it."""

    def __init__(self, message: str, *, owner: str) -> None:
        super().__init__(message)
        self.owner = owner


def _lock_directory(path: Path) -> None:
    key = str(path.resolve())
    if key in _held_locks:
        return
    fd = os.open(path / ".threadwise.lock", os.O_RDWR | os.O_CREAT, 0o644)
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
    _lock_directory(path)
    try:
        yield
    finally:
        release_directory(path)


def collection_base(prefix: str, kb: str) -> str:
    """A valid Chroma collection name for a knowledge base, distinct for distinct kb ids."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{prefix}-{kb}").strip("-_")[:180]
    if safe != f"{prefix}-{kb}":
        safe += "-" + hashlib.sha256(kb.encode()).hexdigest()[:8]
    return safe if len(safe) >= 3 else safe + "-kb"


class KnowledgeStore:
    """Synchronous access to the chunks and manifests of every knowledge base in one Chroma."""

    def __init__(self, client: Any, *, prefix: str, exclusive: bool = False) -> None:
        self._client = client
        self._prefix = prefix
        # True when this process holds the embedded store's lock: nobody else can be mid-ingest.
        self.exclusive = exclusive
        self._collections: dict[str, Any] = {}
        # Held to create a collection, and by quiesced(): a snapshot copies no half-made collection.
        self._creating = threading.Lock()

    def ping(self) -> None:
        self._client.heartbeat()

    def close(self) -> None:
        """Release Chroma's files and, for the embedded store, this process's lock on its directory."""
        settings = self._client.get_settings()
        self._client.close()
        self._collections.clear()
        if settings.is_persistent and settings.persist_directory:
            release_directory(Path(settings.persist_directory))

    @contextlib.contextmanager
    def quiesced(self) -> Iterator[None]:
        """While this is held (and no write is under way) the embedded store's files do not change.

        Chroma applies its write-ahead log to a collection's vector index on the first read of that
        collection in a process, and may persist the index and purge the log then: so every
        collection is read once here, before the caller copies files, and no collection is created
        until the caller is done. Writes themselves are the caller's to hold (Engine.writes_held).
        """
        with self._creating:
            for col in self._client.list_collections():
                col = self._client.get_collection(col) if isinstance(col, str) else col
                col.get(limit=1, include=[])
            yield

    # -- collections -------------------------------------------------------------------------
    def _chunks(self, kb: str) -> Any:
        return self._collection(collection_base(self._prefix, kb), "cosine")

    def _docs(self, kb: str) -> Any:
        return self._collection(collection_base(self._prefix, kb) + ".docs", "l2")

    def _collection(self, name: str, space: str) -> Any:
        col = self._collections.get(name)
        if col is None:
            with self._creating:
                col = self._client.get_or_create_collection(
                    name, embedding_function=None, configuration={"hnsw": {"space": space}}
                )
            self._collections[name] = col
        return col

    def _current_docs(self, kb: str) -> Any:
        """The manifest collection as the server has it now. Another process may have dropped the
        knowledge base (`forget --kb`) or restored it since this one cached its collections: then
        the cached handles name collections that are gone, so both are looked up again."""
        from chromadb.errors import NotFoundError

        name = collection_base(self._prefix, kb) + ".docs"
        try:
            current = self._client.get_collection(name)
        except NotFoundError:
            current = None
        cached = self._collections.get(name)
        if cached is not None and current is not None and cached.id == current.id:
            return current
        self._collections.pop(name, None)
        self._collections.pop(collection_base(self._prefix, kb), None)
        return self._docs(kb)

    def knowledge_bases(self) -> list[str]:
        """Every knowledge base with a manifest, by the id it was written with (see _bump)."""
        prefix = self._prefix + "-"
        found = []
        for col in self._client.list_collections():
            name = col if isinstance(col, str) else col.name
            if name.startswith(prefix) and name.endswith(".docs"):
                meta = {} if isinstance(col, str) else col.metadata or {}
                found.append(str(meta.get("kb") or name[len(prefix) : -len(".docs")]))
        return sorted(found)

    def drop(self, kb: str) -> None:
        for name in (collection_base(self._prefix, kb), collection_base(self._prefix, kb) + ".docs"):
            self._collections.pop(name, None)
            with contextlib.suppress(Exception):  # already gone is the wanted outcome
                self._client.delete_collection(name)

    # -- manifest ----------------------------------------------------------------------------
    def generation(self, kb: str) -> str:
        meta = self._current_docs(kb).metadata or {}
        return str(meta.get("generation", "0"))

    def documents(self, kb: str) -> list[DocumentInfo]:
        got = _get_all(self._current_docs(kb), include=["metadatas"])
        docs = [_info_from_meta(m) for m in got["metadatas"] or []]
        return sorted(docs, key=lambda d: d.name.lower())

    def document(self, kb: str, name: str) -> DocumentInfo | None:
        got = self._current_docs(kb).get(ids=[_doc_id(name)], include=["metadatas"])
        metas = got["metadatas"] or []
        return _info_from_meta(metas[0]) if metas else None

    def activate(self, kb: str, info: DocumentInfo) -> None:
        """Make `info.version` the searchable version of its document (one atomic upsert)."""
        docs = self._docs(kb)
        meta = {k: v for k, v in asdict(info).items() if v is not None}
        docs.upsert(ids=[_doc_id(info.name)], embeddings=[[1.0]], metadatas=[meta])
        self._bump(kb)

    def deactivate(self, kb: str, name: str) -> None:
        self._docs(kb).delete(ids=[_doc_id(name)])
        self._bump(kb)

    def _bump(self, kb: str) -> None:
        # The kb id rides along: a collection name is only a sanitised form of it (collection_base).
        generation = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}"
        self._docs(kb).modify(metadata={"generation": generation, "kb": kb})

    # -- chunks ------------------------------------------------------------------------------
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
        col = self._chunks(kb)
        for start in range(0, len(chunks), _WRITE_BATCH):
            part = chunks[start : start + _WRITE_BATCH]
            col.add(
                ids=[f"{version}:{c.index}" for c in part],
                embeddings=embeddings[start : start + len(part)],
                documents=[c.text for c in part],
                metadatas=[_chunk_meta(c, document, version, url) for c in part],
            )

    def delete_version(self, kb: str, version: str) -> None:
        self._chunks(kb).delete(where={"version": version})

    def embeddings_by_hash(self, kb: str, version: str) -> dict[str, np.ndarray]:
        got = _get_all(self._chunks(kb), where={"version": version}, include=["embeddings", "metadatas"])
        metas = got["metadatas"] or []
        vectors = got["embeddings"] if got["embeddings"] is not None else []
        return {str(m["hash"]): np.asarray(v, dtype=np.float32) for m, v in zip(metas, vectors, strict=True)}

    def all_chunks(self, kb: str) -> tuple[list[str], np.ndarray]:
        """Every chunk's text and vector (benchmarks and exports)."""
        got = _get_all(self._chunks(kb), include=["documents", "embeddings"])
        return list(got["documents"] or []), np.asarray(got["embeddings"], dtype=np.float32)

    def chunk_count(self, kb: str) -> int:
        return int(self._chunks(kb).count())

    def nearest(self, kb: str, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The `n` chunks nearest to `vector`: (id, cosine similarity), nearest first. Ids only: a
        search reads the texts of the few chunks it keeps, not of every candidate."""
        if n <= 0:
            return []
        got = self._chunks(kb).query(query_embeddings=[vector], n_results=n, include=["distances"])
        pairs = zip(got["ids"][0], got["distances"][0], strict=True)
        return [(cid, 1.0 - float(dist)) for cid, dist in pairs]

    def chunks_by_id(self, kb: str, ids: Sequence[str]) -> list[StoredChunk]:
        if not ids:
            return []
        got = self._chunks(kb).get(ids=list(ids), include=["documents", "metadatas"])
        return [
            _stored(c, t, m) for c, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        ]

    def chunks_of_versions(self, kb: str, versions: Sequence[str]) -> list[StoredChunk]:
        """Every chunk of these document versions (texts and metadata, no vectors)."""
        if len(versions) > 20:
            # Many versions (a first load): one plain scan, filtered here, beats paging through a
            # large `$in` filter that the database re-evaluates for every page.
            wanted = set(versions)
            got = _get_all(self._chunks(kb), include=["documents", "metadatas"])
            rows = zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            return [_stored(c, t, m) for c, t, m in rows if m["version"] in wanted]
        out: list[StoredChunk] = []
        for version in versions:
            got = _get_all(self._chunks(kb), where={"version": version}, include=["documents", "metadatas"])
            rows = zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            out.extend(_stored(c, t, m) for c, t, m in rows)
        return out

    def sweep(self, kb: str) -> int:
        """Delete chunks of versions that are not active (left by an ingest that was killed).

        Only safe while no other process can be writing: with a shared Chroma server another
        worker's in-flight ingest looks exactly like such leftovers (see LeftoverSweeper).
        """
        if not self.exclusive:
            return 0
        stale = self.unreferenced_versions(kb)
        for version in stale:
            self.delete_version(kb, version)
        return len(stale)

    def unreferenced_versions(self, kb: str) -> set[str]:
        """Versions that have chunks but that the manifest does not name (now)."""
        active = {d.version for d in self.documents(kb)}
        got = _get_all(self._chunks(kb), include=["metadatas"])
        return {str(m["version"]) for m in got["metadatas"] or [] if m["version"] not in active}


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

    def __init__(self, store: KnowledgeStore, *, after: float, clock: Callable[[], float] = time.monotonic):
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


_PAGE = 5000  # Chroma's SQLite backend refuses a statement with too many variables (~32k)


def _get_all(collection: Any, **query: Any) -> dict[str, Any]:
    """`collection.get(**query)` in pages, merged: any number of records in one result."""
    fields = ["ids", *query.get("include", [])]
    merged: dict[str, list[Any]] = {f: [] for f in fields}
    offset = 0
    while True:
        page = collection.get(**query, limit=_PAGE, offset=offset)
        for f in fields:
            values = page[f]
            merged[f].extend(values if values is not None else [])
        if len(page["ids"]) < _PAGE:
            return merged
        offset += _PAGE


def new_version() -> str:
    return uuid.uuid4().hex[:16]


def _doc_id(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


def _chunk_meta(chunk: Chunk, document: str, version: str, url: str | None) -> dict[str, str | int]:
    meta: dict[str, str | int] = {
        "document": document,
        "version": version,
        "index": chunk.index,
        "locator": chunk.locator(),
        "hash": hashlib.sha256(chunk.text.encode("utf-8")).hexdigest(),
    }
    if chunk.page is not None:
        meta["page"] = chunk.page
    if url:
        meta["url"] = url
    return meta


def _stored(cid: str, text: str | None, meta: Any, similarity: float = 0.0) -> StoredChunk:
    url = meta.get("url")
    return StoredChunk(
        id=cid,
        text=text or "",
        document=str(meta["document"]),
        version=str(meta["version"]),
        locator=str(meta.get("locator", "")),
        url=str(url) if url else None,
        similarity=similarity,
    )


def _info_from_meta(meta: Any) -> DocumentInfo:
    return DocumentInfo(
        name=str(meta["name"]),
        sha256=str(meta["sha256"]),
        version=str(meta["version"]),
        chunks=int(meta["chunks"]),
        uploader=str(meta.get("uploader", "")),
        uploaded_at=float(meta["uploaded_at"]),
        size=int(meta.get("size", 0)),
        kind=str(meta.get("kind", "")),
        url=str(meta["url"]) if meta.get("url") else None,
    )
