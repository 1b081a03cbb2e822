"""The vector store on Chroma (server or embedded): one chunk collection and one document manifest
collection per knowledge base, named from CHROMA_COLLECTION_NAME and the knowledge base's id.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from rag.chroma.client import open_client
from rag.chroma.files import release_directory
from rag.scopes import WORKSPACE
from rag.store import Metadata, Records, StoredChunk, version_of
from rag.types import Chunk, DocumentInfo

log = structlog.get_logger(__name__)

_WRITE_BATCH = 1000
_VECTOR = np.dtype("<f4")


def open_store(*, persist_directory: str, host: str | None, port: int, prefix: str) -> ChromaStore:
    """The store CHROMA_HOST (a server) or CHROMA_PERSIST_DIRECTORY (embedded, then held alone) names."""
    client = open_client(persist_directory=persist_directory, host=host, port=port)
    return ChromaStore(client, prefix=prefix, exclusive=not host)


def collection_base(prefix: str, kb: str) -> str:
    """A valid Chroma collection name for a knowledge base, distinct for distinct kb ids."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{prefix}-{kb}").strip("-_")[:180]
    if safe != f"{prefix}-{kb}":
        safe += "-" + hashlib.sha256(kb.encode()).hexdigest()[:8]
    return safe if len(safe) >= 3 else safe + "-kb"


class ChromaStore:
    """The VectorStore on Chroma: per knowledge base a chunk collection and a manifest collection."""

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
        until the caller is done. Writes themselves are the caller's to hold (Engine.held_still).
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
        self._docs(kb).modify(metadata={"generation": _new_generation(), "kb": kb})

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

    def nearest(
        self, kb: str, vector: np.ndarray, n: int, *, within: Mapping[str, int] | None = None
    ) -> list[tuple[str, float]]:
        """The `n` chunks nearest to `vector`: (id, cosine similarity), nearest first. Ids only: a
        search reads the texts of the few chunks it keeps, not of every candidate.

        `within` (a place's documents), by how much of the collection they are — Chroma's filtered
        graph search slows down the smaller the share it may return (100 of 100k chunks: ~90 ms):
        - a few hundred chunks: their vectors are compared one by one;
        - most of the collection: all of it is searched a little deeper, and their chunks kept (too
          few of them there, the others being nearer: a search filtered by their versions);
        - in between: the graph search is given their chunk ids (`version:i`)."""
        if n <= 0:
            return []
        col = self._chunks(kb)
        if within is None:
            return _pairs(col.query(**_query(vector, n)))
        wanted = sum(within.values())
        if wanted <= EXACT_MAX:
            return (
                _exact(col.get(ids=_chunk_ids(within), include=["embeddings"]), vector, n) if wanted else []
            )
        total = max(col.count(), 1)
        if wanted >= BROAD_SHARE * total:
            deeper = min(total, n * total // wanted + n)
            got = col.query(**_query(vector, deeper))
            kept = [(cid, s) for cid, s in _pairs(got) if version_of(cid) in within][:n]
            if len(kept) >= min(n, wanted):
                return kept
            # The other documents' chunks were nearer than most of these: a filtered search, quick
            # for so large a share (a list of their ids would be most of the collection's).
            return _pairs(col.query(where=_versions(within), **_query(vector, min(n, wanted))))
        return _nearest_among(col, _query(vector, min(n, wanted)), within)

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

    def unreferenced_versions(self, kb: str) -> set[str]:
        """Versions that have chunks but that the manifest does not name (now)."""
        active = {d.version for d in self.documents(kb)}
        got = _get_all(self._chunks(kb), include=["metadatas"])
        return {str(m["version"]) for m in got["metadatas"] or [] if m["version"] not in active}

    # -- export and import -------------------------------------------------------------------
    def manifest_records(self, kb: str) -> tuple[Records, Metadata]:
        manifest = self._existing(collection_base(self._prefix, kb) + ".docs")
        if manifest is None:
            return _records({"ids": []}), {}
        # One request: a single read of the manifest is consistent (pages could shift under a delete).
        return _records(manifest.get(include=_EVERYTHING)), dict(manifest.metadata or {})

    def chunk_records(self, kb: str, *, page: int) -> Iterator[Records]:
        chunks = self._existing(collection_base(self._prefix, kb))
        if chunks is not None:
            yield from map(_records, _pages(chunks, page, include=_EVERYTHING))

    def load(
        self, kb: str, *, chunks: Iterable[Records], manifest: Iterable[Records], metadata: Metadata
    ) -> None:
        # The collections are kept, not recreated, so running processes that hold them go on working.
        docs, col = self._current_docs(kb), self._chunks(kb)
        for records in chunks:  # not searchable yet
            col.upsert(**_upsert(records))
        wanted: set[str] = set()
        active: set[str] = set()
        for records in manifest:  # now they are
            docs.upsert(**_upsert(records))
            wanted.update(records.ids)
            active.update(str(m["version"]) for m in records.metadatas)
        gone = [i for got in _pages(docs, _PAGE, include=[]) for i in got["ids"] if i not in wanted]
        for start in range(0, len(gone), _PAGE):
            docs.delete(ids=gone[start : start + _PAGE])
        # A new generation: every process's query cache and keyword index see the knowledge base changed.
        docs.modify(metadata={**metadata, "kb": kb, "generation": _new_generation()})
        for version in sorted(self.unreferenced_versions(kb) - active):
            col.delete(where={"version": version})

    def _existing(self, name: str) -> Any | None:
        """A collection as the server has it, or None (never written to): a read creates nothing."""
        from chromadb.errors import NotFoundError

        try:
            return self._client.get_collection(name)
        except (NotFoundError, ValueError):
            return None


_PAGE = 5000  # Chroma's SQLite backend refuses a statement with too many variables (~32k)


_EVERYTHING = ["embeddings", "documents", "metadatas"]
EXACT_MAX = 600  # a search within this many chunks compares their vectors one by one
BROAD_SHARE = 0.3  # a search within this share of a collection searches all of it, deeper


def _query(vector: np.ndarray, n: int) -> dict[str, Any]:
    return {"query_embeddings": [vector], "n_results": n, "include": ["distances"]}


def _chunk_ids(within: Mapping[str, int]) -> list[str]:
    """The ids of these document versions' chunks (`version:i`, as add_chunks writes them)."""
    return [f"{version}:{i}" for version, count in within.items() for i in range(count)]


def _nearest_among(col: Any, query: dict[str, Any], within: Mapping[str, int]) -> list[tuple[str, float]]:
    """`query` among the chunks of these versions, given to the graph search by id."""
    try:
        return _pairs(col.query(ids=_chunk_ids(within), **query))
    except Exception as exc:  # chromadb.errors.InternalError: a version deleted since it was listed
        log.info("chroma_ids_search_failed", error=type(exc).__name__)
        return _pairs(col.query(where=_versions(within), **query))


def _versions(within: Mapping[str, int]) -> dict[str, Any]:
    """A filter on these document versions' chunks."""
    return {"version": {"$in": sorted(within)}}


def _pairs(got: dict[str, Any]) -> list[tuple[str, float]]:
    """A query's ids and cosine distances as (id, cosine similarity)."""
    return [(cid, 1.0 - float(dist)) for cid, dist in zip(got["ids"][0], got["distances"][0], strict=True)]


def _exact(got: dict[str, Any], vector: np.ndarray, n: int) -> list[tuple[str, float]]:
    """The `n` of these chunks most similar to `vector`, by cosine, nearest first."""
    if not got["ids"]:
        return []
    vectors = np.asarray(got["embeddings"], dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1) * max(float(np.linalg.norm(vector)), 1e-12)
    similarity = vectors @ vector.astype(np.float32) / np.maximum(norms, 1e-12)
    best = np.argsort(-similarity, kind="stable")[:n]
    return [(str(got["ids"][i]), float(similarity[i])) for i in best]


def _pages(collection: Any, page: int, **query: Any) -> Iterator[dict[str, Any]]:
    """`collection.get(**query)` a page at a time (offsets shift under concurrent deletes: a record
    may be missed or seen twice)."""
    offset = 0
    while True:
        got = collection.get(**query, limit=page, offset=offset)
        yield got
        if len(got["ids"]) < page:
            return
        offset += page


def _get_all(collection: Any, **query: Any) -> dict[str, Any]:
    """`collection.get(**query)` in pages, merged: any number of records in one result."""
    fields = ["ids", *query.get("include", [])]
    merged: dict[str, list[Any]] = {f: [] for f in fields}
    for got in _pages(collection, _PAGE, **query):
        for f in fields:
            values = got[f]
            merged[f].extend(values if values is not None else [])
    return merged


def _records(got: dict[str, Any]) -> Records:
    ids = [str(i) for i in got["ids"]]
    vectors = got.get("embeddings")
    texts = got.get("documents")
    metadatas = got.get("metadatas")
    return Records(
        ids=ids,
        vectors=np.asarray(vectors, dtype=_VECTOR).reshape(len(ids), -1)
        if ids
        else np.zeros((0, 0), _VECTOR),
        texts=list(texts) if texts is not None else [None] * len(ids),
        metadatas=[dict(m or {}) for m in metadatas] if metadatas is not None else [{} for _ in ids],
    )


def _upsert(records: Records) -> dict[str, Any]:
    texts = None if all(t is None for t in records.texts) else records.texts
    return {
        "ids": records.ids,
        "embeddings": records.vectors,
        "documents": texts,
        "metadatas": records.metadatas,
    }


def _new_generation() -> str:
    return f"{time.time():.6f}-{uuid.uuid4().hex[:8]}"


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
        scope=str(meta.get("scope") or WORKSPACE),
    )
