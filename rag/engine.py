"""The engine: ingest documents into a knowledge base, search it, answer questions from it.

It takes bytes, text and a knowledge-base id and knows nothing of chat. Every blocking step
(parsing, embedding, Chroma calls) runs in a worker thread so an event loop calling it stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import structlog

from rag import extract
from rag.answer import Answerer
from rag.cache import QueryCache
from rag.chunk import chunk_document
from rag.embed import SentenceEmbedder, text_key
from rag.errors import UserFacingError
from rag.focus import SentenceHighlighter
from rag.gate import WriteGate, run_to_end
from rag.names import look_alike_key, name_key, normalize_name, shown
from rag.search import HybridSearcher, SearchOptions
from rag.store import KnowledgeStore, new_version
from rag.types import (
    Answer,
    Chunk,
    DocumentInfo,
    IngestResult,
    IngestStatus,
    KbStats,
    Passage,
    Turn,
    Upload,
)

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks in all)
# (stage, seconds): extract, embed, store, search or llm. Called from worker threads too.
StageObserver = Callable[[str, float], None]


GROUP_CHUNKS = 1024  # chunks of several files embedded in one pass by ingest_many
IngestOutcome = IngestResult | UserFacingError


class NoSuchDocument(UserFacingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no document called {shown(name)}. Say `docs` to see the list.")
        self.name = name


class NotYourDocument(UserFacingError):
    """Someone other than a document's uploader (and no admin) tried to replace or delete it."""

    def __init__(self, name: str, owner: str) -> None:
        who = owner or "someone else"
        super().__init__(f"{shown(name)} belongs to {who}: only they or an admin can change it.")
        self.name = name
        self.owner = owner


class LookAlikeName(UserFacingError):
    """A new document's name reads like another person's document's."""

    def __init__(self, name: str, existing: DocumentInfo) -> None:
        who = existing.uploader or "someone else"
        super().__init__(
            f"{shown(name)} looks like {shown(existing.name)}, which belongs to {who}: please give "
            "your file a name that differs in more than case, accents or look-alike letters."
        )


_LockKey = tuple[str, str]  # (knowledge base, name_key of the document)


@dataclass
class _NamedLock:
    lock: asyncio.Lock
    users: int = 0  # holders and waiters


class _NameLocks:
    """One lock per document name while someone holds or waits for it, then forgotten: a lock per
    name ever tried would let anyone grow the process's memory by sending names."""

    def __init__(self) -> None:
        self._entries: dict[_LockKey, _NamedLock] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def locked(self, key: _LockKey) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.lock.locked()

    async def acquire(self, key: _LockKey) -> None:
        entry = self._entries.setdefault(key, _NamedLock(asyncio.Lock()))
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:  # cancelled while waiting
            self._leave(key, entry)
            raise

    def release(self, key: _LockKey) -> None:
        entry = self._entries[key]
        entry.lock.release()
        self._leave(key, entry)

    @contextlib.asynccontextmanager
    async def hold(self, key: _LockKey) -> AsyncIterator[None]:
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    def _leave(self, key: _LockKey, entry: _NamedLock) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._entries[key]


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


FOCUS_DEPTH = 2  # an answer's passages are the better half of twice as many searched (rag.focus)


@dataclass(frozen=True)
class EngineLimits:
    max_bytes: int
    allowed_types: frozenset[str]
    chunk_tokens: int = 256


T = TypeVar("T")


class _Stopped(Exception):
    """The caller of an ingest was cancelled: the work stopped between two steps."""


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise _Stopped


def _stopping(progress: Progress | None, stop: threading.Event | None) -> Progress:
    """`progress`, checking `stop` first: it is called after each embedding batch (about a second)."""

    def step(done: int, total: int) -> None:
        _check(stop)
        if progress is not None:
            progress(done, total)

    return step


async def _stoppable(work: Callable[[threading.Event], T]) -> T:
    """`work(stop)` in a worker thread. A cancelled caller sets `stop`, which the work checks between
    steps, and waits for the thread to end before the cancellation goes on: a deadline or a shutdown
    stops an ingest within a batch, nothing is left half-written, and the caller's locks cover it all."""
    stop = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(work, stop))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # _Stopped, as asked: retrieved, so that it is not reported
        raise


class Engine:
    def __init__(
        self,
        *,
        store: KnowledgeStore,
        embedder: SentenceEmbedder,
        answerer: Answerer,
        limits: EngineLimits,
        search_options: SearchOptions,
        query_cache: QueryCache[Answer],
        stage_observer: StageObserver | None = None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._answerer = answerer
        self._limits = limits
        self._options = search_options
        self._searcher = HybridSearcher(store)
        self._focus = SentenceHighlighter(embedder)
        self.warmed = False  # set by warm(): model loaded and keyword indexes built
        self._query_cache = query_cache
        self._doc_locks = _NameLocks()  # one ingest or forget of a document at a time
        self._writes = WriteGate()  # every store write passes it (in its thread); a snapshot holds it alone
        self._observe = stage_observer

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self._observe is not None:
                self._observe(stage, time.perf_counter() - started)

    @property
    def embedder(self) -> SentenceEmbedder:
        return self._embedder

    @property
    def store(self) -> KnowledgeStore:
        return self._store

    @property
    def limits(self) -> EngineLimits:
        return self._limits

    async def sweep(self) -> int:
        """Remove what ingests killed midway left behind (invisible, but it takes room). Start-up only."""

        def run() -> int:
            with self._writes.shared():
                return sum(self._store.sweep(kb) for kb in self._store.knowledge_bases())

        removed = await run_to_end(run)
        if removed:
            log.info("swept_unfinished_ingests", versions=removed)
        return removed

    async def warm(self) -> None:
        """Load the model and every knowledge base's keyword index, so no question waits for them."""
        await asyncio.to_thread(self._embedder.prepare_queries)
        for kb in await asyncio.to_thread(self._store.knowledge_bases):
            await asyncio.to_thread(self._searcher.warm, kb)
        self.warmed = True

    def ping(self) -> None:
        """Raises when the store does not answer."""
        self._store.ping()

    def writes_held(self) -> contextlib.AbstractContextManager[None]:
        """While held, no store write is midway: writes under way finish first, new ones wait (their
        parsing and embedding go on). Searches go on. Blocks: enter it in a worker thread. For a
        consistent copy of the store's files (rag/backup.py)."""
        return self._writes.exclusive()

    # -- ingest ------------------------------------------------------------------------------
    def check_upload(self, name: str, size: int | None) -> None:
        """Reject a file from its metadata alone, before anything is downloaded."""
        extract.check_metadata(
            name, size, allowed_types=self._limits.allowed_types, max_bytes=self._limits.max_bytes
        )

    async def ingest(
        self,
        kb: str,
        name: str,
        data: bytes,
        *,
        uploader: str = "",
        url: str | None = None,
        trusted: bool = False,
        progress: Progress | None = None,
    ) -> IngestResult:
        """Raises NotYourDocument when `name` is someone else's and the upload is not `trusted`."""
        upload = Upload(name, data, uploader, url, trusted=trusted)
        (outcome,) = await self.ingest_many(kb, [upload], progress=progress)
        if isinstance(outcome, UserFacingError):
            raise outcome
        return outcome

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
        held: list[_LockKey] = []

        def report(index: int, outcome: IngestOutcome) -> None:
            outcomes[index] = outcome
            if on_result is not None:
                on_result(outcome)

        async def flush() -> None:
            try:
                if group:
                    batch = [p for _, p in group]
                    results = await _stoppable(lambda stop: self._commit(kb, batch, progress, stop))
                    for (index, _), result in zip(group, results, strict=True):
                        report(index, result)
            finally:
                group.clear()
                while held:
                    self._doc_locks.release(held.pop())

        try:
            for index, upload in enumerate(uploads):
                outcomes.append(None)
                try:
                    upload = replace(upload, name=normalize_name(upload.name))
                except UserFacingError as exc:
                    report(index, exc)
                    continue
                key = (kb, upload.name)
                if self._doc_locks.locked(key):  # the same name earlier in this group, or another
                    await flush()  # ingest of it: never wait for a lock while holding others
                await self._doc_locks.acquire(key)
                held.append(key)
                prepared: _Prepared | IngestOutcome
                try:
                    prepared = await run_to_end(self._prepare, kb, upload)
                except UserFacingError as exc:
                    prepared = exc
                if not isinstance(prepared, _Prepared):  # unchanged, or refused
                    held.remove(key)
                    self._doc_locks.release(key)
                    report(index, prepared)
                    continue
                group.append((index, prepared))
                if sum(len(p.chunks) for _, p in group) >= group_chunks:
                    await flush()
        finally:
            await flush()
        return [outcome for outcome in outcomes if outcome is not None]

    def _prepare(self, kb: str, upload: Upload) -> _Prepared | IngestResult:
        """Parse and chunk one file; an IngestResult when its bytes are already there."""
        started = time.perf_counter()
        sha = hashlib.sha256(upload.data).hexdigest()
        previous = self._find(kb, upload.name)
        if previous is not None and previous.sha256 == sha:
            return IngestResult(previous.name, "unchanged", previous.chunks, time.perf_counter() - started)
        if previous is not None:
            # A name stored before names were normalised keeps it, so the swap stays one manifest write.
            upload = self._replacing(upload, previous)
        elif not upload.trusted:
            self._refuse_look_alike(kb, upload)
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

    def _refuse_look_alike(self, kb: str, upload: Upload) -> None:
        """A new name that reads like someone else's document (`Policy.md`, `p\u043elicy.md` beside
        `policy.md`) would be cited as if it were theirs: refused, naming the owner."""
        key = look_alike_key(upload.name)
        for doc in self._store.documents(kb):
            if doc.uploader != upload.uploader and look_alike_key(doc.name) == key:
                raise LookAlikeName(upload.name, doc)

    @staticmethod
    def _replacing(upload: Upload, previous: DocumentInfo) -> Upload:
        """The upload as the new version of `previous`, if it may be: else NotYourDocument."""
        if not upload.trusted and previous.uploader != upload.uploader:
            raise NotYourDocument(previous.name, previous.uploader)
        uploader = upload.uploader if upload.claim else previous.uploader
        return replace(upload, name=previous.name, uploader=uploader)

    def _find(self, kb: str, name: str, *, scan: bool = False) -> DocumentInfo | None:
        """The document `name` denotes: stored under exactly that name, under its normalised or
        decomposed form (names stored before normalisation, e.g. a `café.md` from a Mac), and with
        `scan`, any stored name that normalises to the same (one with a control character, say).
        Ingest does not scan: the manifest is read whole for that, and a folder has many files."""
        key = name_key(name)
        for candidate in dict.fromkeys((name, key, unicodedata.normalize("NFD", key))):
            info = self._store.document(kb, candidate)
            if info is not None:
                return info
        if not scan:
            return None
        return next((d for d in self._store.documents(kb) if name_key(d.name) == key), None)

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
                _check(stop)
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
                    )
                    _check(stop)  # the last moment a stop leaves the knowledge base as it was
                    self._store.activate(kb, info)
            except BaseException:
                self._store.delete_version(kb, version)
                raise
            if previous is not None:
                self._store.delete_version(kb, previous.version)
        self._query_cache.invalidate(kb)
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
        return IngestResult(upload.name, status, chunks, seconds, embedded)

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

    # -- documents ---------------------------------------------------------------------------
    async def documents(self, kb: str) -> list[DocumentInfo]:
        return await asyncio.to_thread(self._store.documents, kb)

    async def identities(self, kb: str) -> dict[str, str]:
        """What each document says about itself (title, file-name words, first-page names, codes and
        dates), by name, as every passage of it carries it (rag/identity.py)."""
        return await asyncio.to_thread(self._searcher.identities, kb)

    async def document(self, kb: str, name: str) -> DocumentInfo | None:
        """The document `name` denotes, as `documents` lists it or in any spelling that normalises
        to the same name (see `_find`)."""
        return await asyncio.to_thread(self._find, kb, name, scan=True)

    async def forget(self, kb: str, name: str, *, user: str | None = None) -> DocumentInfo:
        """Delete the document `name` denotes. With `user`, only if that user uploaded it (else
        NotYourDocument); without, whoever did (an admin, the operator)."""
        async with self._doc_locks.hold((kb, name_key(name))):
            return await run_to_end(self._forget, kb, name, user)

    def _forget(self, kb: str, name: str, user: str | None) -> DocumentInfo:
        info = self._find(kb, name, scan=True)
        if info is None:
            raise NoSuchDocument(name)
        if user is not None and info.uploader != user:
            raise NotYourDocument(info.name, info.uploader)
        with self._writes.shared():
            self._store.deactivate(kb, info.name)
            self._store.delete_version(kb, info.version)
        self._query_cache.invalidate(kb)
        return info

    async def forget_uploads(self, kb: str, uploader: str) -> list[DocumentInfo]:
        """Delete every document of `kb` that `uploader` uploaded (a person's data-deletion request)."""
        removed = []
        for doc in await self.documents(kb):
            if doc.uploader == uploader:
                with contextlib.suppress(UserFacingError):  # deleted meanwhile: gone is what we want
                    removed.append(await self.forget(kb, doc.name))
        return removed

    async def drop(self, kb: str) -> KbStats:
        """Delete a whole knowledge base; returns what it held."""

        def run() -> KbStats:
            docs = self._store.documents(kb)
            with self._writes.shared():
                self._store.drop(kb)
            self._query_cache.invalidate(kb)
            return KbStats(kb=kb, documents=len(docs), chunks=sum(d.chunks for d in docs))

        return await run_to_end(run)

    async def stats(self, kb: str) -> KbStats:
        def run() -> KbStats:
            docs = self._store.documents(kb)
            return KbStats(kb=kb, documents=len(docs), chunks=sum(d.chunks for d in docs))

        return await asyncio.to_thread(run)

    # -- ask ---------------------------------------------------------------------------------
    async def search(
        self, kb: str, query: str, *, top_k: int | None = None, hybrid: bool | None = None
    ) -> list[Passage]:
        with self._embedder.question():  # an ingest in this process pauses its model runs meanwhile
            with self._timed("embed"):
                vector = await asyncio.to_thread(self._embedder.embed_query, query)
            with self._timed("search"):
                return await asyncio.to_thread(self._search, kb, query, vector, top_k, hybrid)

    async def passages(self, kb: str, question: str, *, hybrid: bool | None = None) -> list[Passage]:
        """What an answer is written from: twice the configured number of passages searched, and
        the better half kept, the passage whose sentence answers the question first (rag.focus)."""
        with self._embedder.question():
            with self._timed("embed"):
                vector = await asyncio.to_thread(self._embedder.embed_query, question)
            with self._timed("search"):
                return await asyncio.to_thread(self._focused, kb, question, vector, hybrid)

    def _focused(self, kb: str, query: str, vector: np.ndarray, hybrid: bool | None) -> list[Passage]:
        top_k = self._options.top_k
        found = self._search(kb, query, vector, top_k * FOCUS_DEPTH, hybrid)
        return self._focus.order(query, found, top_k)

    def _search(
        self, kb: str, query: str, vector: np.ndarray, top_k: int | None, hybrid: bool | None
    ) -> list[Passage]:
        options = self._options
        if top_k is not None:
            options = replace(options, top_k=top_k, candidates=max(options.candidates, top_k * 4))
        if hybrid is not None:
            options = replace(options, hybrid=hybrid)
        return self._searcher.search(kb, query, vector, options)

    async def ask(
        self,
        kb: str,
        question: str,
        *,
        history: Sequence[Turn] = (),
        on_delta: Callable[[str], Awaitable[None]] | None = None,
    ) -> Answer:
        # A follow-up is searched together with the question before it, which it often refers to.
        last_user = next((t.text for t in reversed(history) if t.role == "user"), "")
        query = f"{last_user}\n{question}" if last_user else question
        with self._timed("embed"):
            vector = await asyncio.to_thread(self._embedder.embed_query, query)
        generation = await asyncio.to_thread(self._searcher.generation, kb)
        if not history:
            cached = await asyncio.to_thread(self._query_cache.get, kb, generation, vector)
            if cached is not None:
                return Answer(cached.text, cached.citations, cached.mode, cached.language, cached=True)
        with self._timed("search"):
            passages = await asyncio.to_thread(self._focused, kb, query, vector, None)
        with self._timed("llm"):  # the extractive answerer too: the stage is "write the answer"
            answer = await self._answerer.answer(question, passages, history=history, on_delta=on_delta)
        if answer.mode == "llm" and not history:
            await asyncio.to_thread(self._query_cache.put, kb, generation, vector, answer)
        return answer

    def cache_stats(self) -> dict[str, float]:
        emb = self._embedder.cache
        return {
            "embedding_cache_hits": emb.hits,
            "embedding_cache_misses": emb.misses,
            "query_cache_hits": self._query_cache.hits,
            "query_cache_misses": self._query_cache.misses,
        }
