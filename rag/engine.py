"""The engine: ingest documents into a knowledge base, search it, answer questions from it.

It takes bytes, text and a knowledge-base id and knows nothing of chat. Every blocking step
(parsing, embedding, Chroma calls) runs in a worker thread so an event loop calling it stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import structlog

from rag import extract
from rag.answer import Answerer
from rag.cache import QueryCache
from rag.chunk import chunk_document
from rag.embed import SentenceEmbedder
from rag.errors import UserFacingError
from rag.gate import WriteGate, run_to_end
from rag.search import HybridSearcher, SearchOptions
from rag.store import KnowledgeStore, new_version
from rag.types import Answer, DocumentInfo, IngestResult, IngestStatus, KbStats, Passage, Turn

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks in all)
# (stage, seconds): extract, embed, store, search or llm. Called from worker threads too.
StageObserver = Callable[[str, float], None]


@dataclass(frozen=True)
class EngineLimits:
    max_bytes: int
    allowed_types: frozenset[str]
    chunk_tokens: int = 256


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
        self.warmed = False  # set by warm(): model loaded and keyword indexes built
        self._query_cache = query_cache
        self._doc_locks: dict[tuple[str, str], asyncio.Lock] = {}
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
        await asyncio.to_thread(self._embedder.load)
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
        progress: Progress | None = None,
    ) -> IngestResult:
        lock = self._doc_locks.setdefault((kb, name), asyncio.Lock())
        async with lock:
            return await run_to_end(self._ingest, kb, name, data, uploader, url, progress)

    def _ingest(
        self, kb: str, name: str, data: bytes, uploader: str, url: str | None, progress: Progress | None
    ) -> IngestResult:
        started = time.perf_counter()
        sha = hashlib.sha256(data).hexdigest()
        previous = self._store.document(kb, name)
        if previous is not None and previous.sha256 == sha:
            return IngestResult(name, "unchanged", previous.chunks, time.perf_counter() - started)
        with self._timed("extract"):  # parsing and chunking
            doc = extract.extract(
                name, data, allowed_types=self._limits.allowed_types, max_bytes=self._limits.max_bytes
            )
            chunks = chunk_document(doc, self._embedder, max_tokens=self._limits.chunk_tokens)
        if not chunks:
            raise UserFacingError(f"{name} has no text I can read.")
        texts = [c.text for c in chunks]
        with self._timed("embed"):
            vectors, embedded = self._vectors(kb, previous, texts, progress)
        version = new_version()
        with self._writes.shared():  # from the first chunk written to the old version deleted
            try:
                with self._timed("store"):
                    self._store.add_chunks(
                        kb, document=name, version=version, chunks=chunks, embeddings=vectors, url=url
                    )
                    info = DocumentInfo(
                        name=name,
                        sha256=sha,
                        version=version,
                        chunks=len(chunks),
                        uploader=uploader,
                        uploaded_at=time.time(),
                        size=len(data),
                        kind=doc.kind,
                        url=url,
                    )
                    self._store.activate(kb, info)
            except BaseException:
                self._store.delete_version(kb, version)
                raise
            if previous is not None:
                self._store.delete_version(kb, previous.version)
        self._query_cache.invalidate(kb)
        seconds = time.perf_counter() - started
        log.info(
            "ingested", kb=kb, document=name, chunks=len(chunks), embedded=embedded, seconds=round(seconds, 2)
        )
        status: IngestStatus = "replaced" if previous is not None else "added"
        return IngestResult(name, status, len(chunks), seconds, embedded)

    def _vectors(
        self, kb: str, previous: DocumentInfo | None, texts: list[str], progress: Progress | None
    ) -> tuple[np.ndarray, int]:
        """Vectors for `texts`, reusing those of the previous version's identical chunks."""
        reuse = self._store.embeddings_by_hash(kb, previous.version) if previous else {}
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        todo = sorted({t for t, k in zip(texts, keys, strict=True) if k not in reuse})
        done = len(texts) - len(todo)
        counter = [done]

        def step(n: int) -> None:
            counter[0] += n
            if progress:
                progress(min(counter[0], len(texts)), len(texts))

        before = self._embedder.embedded_texts
        fresh = dict(zip(todo, self._embedder.embed(todo, progress=step), strict=True)) if todo else {}
        if progress and not todo:
            progress(len(texts), len(texts))
        vectors = np.stack([reuse[k] if k in reuse else fresh[t] for t, k in zip(texts, keys, strict=True)])
        return vectors, self._embedder.embedded_texts - before

    # -- documents ---------------------------------------------------------------------------
    async def documents(self, kb: str) -> list[DocumentInfo]:
        return await asyncio.to_thread(self._store.documents, kb)

    async def document(self, kb: str, name: str) -> DocumentInfo | None:
        return await asyncio.to_thread(self._store.document, kb, name)

    async def forget(self, kb: str, name: str) -> DocumentInfo:
        lock = self._doc_locks.setdefault((kb, name), asyncio.Lock())
        async with lock:
            return await run_to_end(self._forget, kb, name)

    def _forget(self, kb: str, name: str) -> DocumentInfo:
        info = self._store.document(kb, name)
        if info is None:
            raise UserFacingError(f"There is no document called {name}. Say `docs` to see the list.")
        with self._writes.shared():
            self._store.deactivate(kb, name)
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
        with self._timed("embed"):
            vector = await asyncio.to_thread(self._embedder.embed_query, query)
        with self._timed("search"):
            return await asyncio.to_thread(self._search, kb, query, vector, top_k, hybrid)

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
            passages = await asyncio.to_thread(self._search, kb, query, vector, None, None)
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
