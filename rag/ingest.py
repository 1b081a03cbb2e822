"""The ingest pipeline: files parsed and chunked one by one, their new chunks embedded together, each
document then written and activated on its own (all or nothing, see rag/store.py)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import structlog

from rag import extract
from rag.chunk import chunk_document
from rag.documents import find_document, refuse_hidden, refuse_look_alike, replacing
from rag.embed import SentenceEmbedder, text_key
from rag.errors import UserFacingError
from rag.gate import NameLocks, WriteGate, check_stop, run_stoppable, run_to_end
from rag.names import normalize_name
from rag.scopes import is_scope
from rag.store import VectorStore, new_version
from rag.types import Chunk, DocumentInfo, EngineLimits, IngestResult, IngestStatus, Upload

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks in all)
Timed = Callable[[str], contextlib.AbstractContextManager[None]]  # a stage's time, observed
GROUP_CHUNKS = 1024  # chunks of several files embedded in one pass
IngestOutcome = IngestResult | UserFacingError


@dataclass(frozen=True)
class _Prepared:
    """A file parsed and chunked, waiting for its vectors."""

    upload: Upload  # without its bytes
    size: int
    sha: str
    previous: DocumentInfo | None
    kind: str
    chunks: list[Chunk]
    started: float


def _stopping(progress: Progress | None, stop: threading.Event | None) -> Progress:
    """`progress`, checking `stop` first: it is called after each embedding batch (about a second)."""

    def step(done: int, total: int) -> None:
        check_stop(stop)
        if progress is not None:
            progress(done, total)

    return step


class Ingester:
    """Writes documents into a store. `locks` (one ingest or deletion of a document at a time) and
    `writes` (no write during a snapshot) are the engine's, shared with its deletions; `changed(kb)`
    is told after each document written."""

    def __init__(
        self,
        *,
        store: VectorStore,
        embedder: SentenceEmbedder,
        limits: EngineLimits,
        locks: NameLocks,
        writes: WriteGate,
        changed: Callable[[str], None],
        timed: Timed,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._limits = limits
        self._locks = locks
        self._writes = writes
        self._changed = changed
        self._timed = timed

    async def ingest_many(
        self,
        kb: str,
        uploads: Iterable[Upload],
        *,
        progress: Progress | None = None,
        on_result: Callable[[IngestOutcome], None] | None = None,
        group_chunks: int = GROUP_CHUNKS,
    ) -> list[IngestOutcome]:
        """Ingest several files; one outcome each, in order: its result, or why it was refused.

        Files are parsed and chunked one by one; the new chunks of up to `group_chunks` of them are
        embedded together in one length-sorted pass (the model's batches stay full and evenly padded),
        then each document is written and activated on its own, so every document is still all or
        nothing. `uploads` is read lazily: a folder's files need not all be in memory at once.
        `progress` counts the chunks of the group being embedded; `on_result` hears of each file
        when it is done. Errors other than a refused file stop the run; documents finished stay.
        """
        outcomes: list[IngestOutcome | None] = []
        group: list[tuple[int, _Prepared]] = []
        held: list[tuple[str, str]] = []

        def report(index: int, outcome: IngestOutcome) -> None:
            outcomes[index] = outcome
            if on_result is not None:
                on_result(outcome)

        async def flush() -> None:
            try:
                if group:
                    batch = [p for _, p in group]
                    results = await run_stoppable(lambda stop: self._commit(kb, batch, progress, stop))
                    for (index, _), result in zip(group, results, strict=True):
                        report(index, result)
            finally:
                group.clear()
                while held:
                    self._locks.release(held.pop())

        try:
            for index, upload in enumerate(uploads):
                outcomes.append(None)
                prepared = await self._admit(kb, upload, held, flush)
                if isinstance(prepared, _Prepared):
                    group.append((index, prepared))
                    if sum(len(p.chunks) for _, p in group) >= group_chunks:
                        await flush()
                else:  # unchanged, or refused
                    report(index, prepared)
        finally:
            await flush()
        return [outcome for outcome in outcomes if outcome is not None]

    async def _admit(
        self,
        kb: str,
        upload: Upload,
        held: list[tuple[str, str]],
        flush: Callable[[], Awaitable[None]],
    ) -> _Prepared | IngestOutcome:
        """Lock the file's name (kept in `held` while it waits in the group) and prepare it."""
        try:
            upload = replace(upload, name=normalize_name(upload.name))
        except UserFacingError as exc:
            return exc
        key = (kb, upload.name)
        if self._locks.locked(key):  # the same name earlier in this group, or another ingest of
            await flush()  # it: never wait for a lock while holding others
        await self._locks.acquire(key)
        prepared: _Prepared | IngestOutcome
        try:
            prepared = await run_to_end(self._prepare, kb, upload)
        except UserFacingError as exc:
            prepared = exc
        except BaseException:
            self._locks.release(key)
            raise
        if isinstance(prepared, _Prepared):
            held.append(key)
        else:
            self._locks.release(key)
        return prepared

    def _prepare(self, kb: str, upload: Upload) -> _Prepared | IngestResult:
        """Parse and chunk one file; an IngestResult when its bytes are already there."""
        started = time.perf_counter()
        sha = hashlib.sha256(upload.data).hexdigest()
        previous = find_document(self._store, kb, upload.name)
        for scope in (upload.scope, upload.new_scope):
            if scope is not None and not is_scope(scope):
                raise ValueError(f"not a scope: {scope!r}")
        if previous is not None:
            refuse_hidden(upload, previous)  # first: not even "unchanged" is said of it
        if previous is not None and previous.sha256 == sha:
            if upload.scope in (None, previous.scope):
                seconds = time.perf_counter() - started
                return IngestResult(
                    previous.name, "unchanged", previous.chunks, seconds, scope=previous.scope
                )
            return self._rescope(kb, replacing(upload, previous), previous, started)
        if previous is not None:
            upload = replacing(upload, previous)
        elif not upload.trusted:
            refuse_look_alike(self._store, kb, upload)
        with self._timed("extract"):  # parsing and chunking
            doc = extract.extract(
                upload.name,
                upload.data,
                allowed_types=self._limits.allowed_types,
                max_bytes=self._limits.max_bytes,
            )
            chunks = chunk_document(doc, self._embedder, max_tokens=self._limits.chunk_tokens)
        if not chunks:
            raise UserFacingError(f"{upload.name} has no text I can read.")
        # The bytes are not kept: a group of big files with little text must not fill the memory.
        bare = replace(upload, data=b"")
        return _Prepared(bare, len(upload.data), sha, previous, doc.kind, chunks, started)

    def _rescope(self, kb: str, upload: Upload, previous: DocumentInfo, started: float) -> IngestResult:
        """The same bytes with another scope: one manifest write, nothing embedded or written again."""
        scope = upload.scope or previous.scope
        with self._writes.shared():
            self._store.activate(kb, replace(previous, scope=scope, uploader=upload.uploader))
        self._changed(kb)
        log.info("rescoped", kb=kb, document=previous.name, scope=scope)
        seconds = time.perf_counter() - started
        return IngestResult(previous.name, "rescoped", previous.chunks, seconds, scope=scope)

    def _commit(
        self, kb: str, group: list[_Prepared], progress: Progress | None, stop: threading.Event | None = None
    ) -> list[IngestResult]:
        """Embed the group's new chunks in one pass, then write and activate each document.
        `stop` set: stop at the next embedding batch or before the next document is activated."""
        with self._timed("embed"):
            vectors, embedded = self._vectors(kb, group, _stopping(progress, stop))
        return [
            self._write(kb, prepared, doc_vectors, new, stop)
            for prepared, doc_vectors, new in zip(group, vectors, embedded, strict=True)
        ]

    def _write(
        self, kb: str, prepared: _Prepared, vectors: np.ndarray, embedded: int, stop: threading.Event | None
    ) -> IngestResult:
        upload, previous = prepared.upload, prepared.previous
        version = new_version()
        with self._writes.shared():  # from the first chunk written to the old version deleted
            try:
                check_stop(stop)
                with self._timed("store"):
                    self._store.add_chunks(
                        kb,
                        document=upload.name,
                        version=version,
                        chunks=prepared.chunks,
                        embeddings=vectors,
                        url=upload.url,
                    )
                    info = DocumentInfo(
                        name=upload.name,
                        sha256=prepared.sha,
                        version=version,
                        chunks=len(prepared.chunks),
                        uploader=upload.uploader,
                        uploaded_at=time.time(),
                        size=prepared.size,
                        kind=prepared.kind,
                        url=upload.url,
                        scope=upload.scope or upload.new_scope,
                    )
                    check_stop(stop)  # the last moment a stop leaves the knowledge base as it was
                    self._store.activate(kb, info)
            except BaseException:
                self._store.delete_version(kb, version)
                raise
            if previous is not None:
                self._store.delete_version(kb, previous.version)
        self._changed(kb)
        seconds = time.perf_counter() - prepared.started
        chunks = len(prepared.chunks)
        log.info(
            "ingested",
            kb=kb,
            document=upload.name,
            chunks=chunks,
            embedded=embedded,
            seconds=round(seconds, 2),
        )
        status: IngestStatus = "replaced" if previous is not None else "added"
        return IngestResult(upload.name, status, chunks, seconds, embedded, scope=info.scope)

    def _vectors(
        self, kb: str, group: list[_Prepared], progress: Progress | None
    ) -> tuple[list[np.ndarray], list[int]]:
        """Each document's vectors, reusing those of its previous version's identical chunks; the
        rest embedded in one pass, shortest texts first. Also how many each document added."""
        reuse: dict[str, np.ndarray] = {}
        for prepared in group:
            if prepared.previous is not None:
                reuse.update(self._store.embeddings_by_hash(kb, prepared.previous.version))
        texts = [[c.text for c in p.chunks] for p in group]
        keys = [[text_key(t) for t in doc] for doc in texts]
        todo: dict[str, int] = {}  # text -> the document that first needs it
        for i, (doc_texts, doc_keys) in enumerate(zip(texts, keys, strict=True)):
            for text, key in zip(doc_texts, doc_keys, strict=True):
                if key not in reuse:
                    todo.setdefault(text, i)
        ordered = sorted(todo, key=len)
        total = sum(map(len, texts))
        counter = [total - len(ordered)]

        def step(n: int) -> None:
            counter[0] += n
            if progress:
                progress(min(counter[0], total), total)

        fresh: dict[str, np.ndarray] = {}
        if ordered:
            fresh = dict(zip(ordered, self._embedder.embed(ordered, progress=step), strict=True))
        elif progress:
            progress(total, total)
        vectors = [
            np.stack([reuse[k] if k in reuse else fresh[t] for t, k in zip(doc_texts, doc_keys, strict=True)])
            for doc_texts, doc_keys in zip(texts, keys, strict=True)
        ]
        embedded = [0] * len(group)
        for first in todo.values():
            embedded[first] += 1
        return vectors, embedded
