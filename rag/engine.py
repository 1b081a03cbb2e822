"""The engine: ingest documents into a knowledge base, search it, answer questions from it.

It takes bytes, text and a knowledge-base id and knows nothing of chat. Every blocking step
(parsing, embedding, store calls) runs in a worker thread so an event loop calling it stays free.
The ingest pipeline is rag/ingest.py; the store is any rag.store.VectorStore.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import structlog

from rag import extract
from rag.answer import Answerer
from rag.cache import QueryCache
from rag.documents import NoSuchDocument, check_owner, find_document
from rag.embed import SentenceEmbedder
from rag.errors import UserFacingError
from rag.focus import SentenceHighlighter
from rag.gate import NameLocks, WriteGate, run_to_end
from rag.ingest import GROUP_CHUNKS, Ingester, IngestOutcome, Progress
from rag.names import name_key
from rag.scopes import EVERYTHING, WORKSPACE, WORKSPACE_ONLY, Visibility, is_scope
from rag.search import HybridSearcher, SearchOptions
from rag.store import LeftoverSweeper, VectorStore, sweep
from rag.types import Answer, DocumentInfo, EngineLimits, IngestResult, KbStats, Passage, Turn, Upload

log = structlog.get_logger(__name__)

# (stage, seconds): extract, embed, store, search or llm. Called from worker threads too.
StageObserver = Callable[[str, float], None]
# (stage): that stage raised something other than a refusal the user can act on (UserFacingError).
StageFailureObserver = Callable[[str], None]

FOCUS_DEPTH = 2  # an answer's passages are the better half of twice as many searched (rag.focus)


class Engine:
    def __init__(
        self,
        *,
        store: VectorStore,
        embedder: SentenceEmbedder,
        answerer: Answerer,
        limits: EngineLimits,
        search_options: SearchOptions,
        query_cache: QueryCache[Answer],
        stage_observer: StageObserver | None = None,
        failure_observer: StageFailureObserver | None = None,
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
        self._doc_locks = NameLocks()  # one ingest or forget of a document at a time
        self._writes = WriteGate()  # every store write passes it (in its thread); a snapshot holds it alone
        self._observe = stage_observer
        self._observe_failure = failure_observer
        self._ingester = Ingester(
            store=store,
            embedder=embedder,
            limits=limits,
            locks=self._doc_locks,
            writes=self._writes,
            changed=query_cache.invalidate,
            timed=self._timed,
        )

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except UserFacingError:
            raise
        except Exception:
            if self._observe_failure is not None:
                self._observe_failure(stage)
            raise
        finally:
            if self._observe is not None:
                self._observe(stage, time.perf_counter() - started)

    @property
    def embedder(self) -> SentenceEmbedder:
        return self._embedder

    @property
    def limits(self) -> EngineLimits:
        return self._limits

    async def sweep(self) -> int:
        """Remove what ingests killed midway left behind (invisible, but it takes room). Start-up only."""

        def run() -> int:
            with self._writes.shared():
                return sum(sweep(self._store, kb) for kb in self._store.knowledge_bases())

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

    def leftover_sweeper(self, *, after: float) -> LeftoverSweeper:
        """A sweeper of what ingests that died in any process left behind, for a store others write
        to: call its sweep() now and then (rag.store.LeftoverSweeper)."""
        return LeftoverSweeper(self._store, after=after)

    def ping(self) -> None:
        """Raises when the store does not answer."""
        self._store.ping()

    def close(self) -> None:
        """Release the store (for the embedded one, its files and this process's lock on them)."""
        self._store.close()

    @contextlib.contextmanager
    def held_still(self) -> Iterator[float]:
        """While held, the store's files do not change: writes under way finish first, new ones wait
        (their parsing and embedding go on). Searches go on. Blocks: enter it in a worker thread.
        For a consistent copy of the store's files (rag/backup.py); yields when the hold began."""
        with self._writes.exclusive():
            started = time.perf_counter()
            with self._store.quiesced():
                yield started

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
        scope: str | None = None,
        new_scope: str = WORKSPACE,
        sees: Visibility | None = None,
    ) -> IngestResult:
        """Raises NotYourDocument when `name` is someone else's and the upload is not `trusted`
        (NameTaken when `sees`, what the uploader may see, does not see that document). `scope`: who
        may see it (rag/scopes.py); None keeps a replaced document's, and gives a new one `new_scope`."""
        upload = Upload(
            name, data, uploader, url, trusted=trusted, scope=scope, new_scope=new_scope, sees=sees
        )
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
        """Ingest several files; one outcome each, in order: its result, or why it was refused
        (rag.ingest.Ingester.ingest_many)."""
        return await self._ingester.ingest_many(
            kb, uploads, progress=progress, on_result=on_result, group_chunks=group_chunks
        )

    # -- documents ---------------------------------------------------------------------------
    async def knowledge_bases(self) -> list[str]:
        return await asyncio.to_thread(self._store.knowledge_bases)

    async def documents(self, kb: str, *, visibility: Visibility = EVERYTHING) -> list[DocumentInfo]:
        """The documents of `kb` that `visibility` sees (by default all: the operator's view)."""
        docs = await asyncio.to_thread(self._store.documents, kb)
        return [d for d in docs if visibility.sees(d.scope)]

    async def identities(self, kb: str) -> dict[str, str]:
        """What each document says about itself (title, file-name words, first-page names, codes and
        dates), by name, as every passage of it carries it (rag/identity.py)."""
        return await asyncio.to_thread(self._searcher.identities, kb)

    async def document(self, kb: str, name: str) -> DocumentInfo | None:
        """The document `name` denotes, as `documents` lists it or in any spelling that normalises
        to the same name (rag.documents.find_document)."""
        return await asyncio.to_thread(find_document, self._store, kb, name, scan=True)

    async def forget(self, kb: str, name: str, *, user: str | None = None) -> DocumentInfo:
        """Delete the document `name` denotes. With `user`, only if that user uploaded it (else
        NotYourDocument); without, whoever did (an admin, the operator)."""
        async with self._doc_locks.hold((kb, name_key(name))):
            return await run_to_end(self._forget, kb, name, user)

    def _forget(self, kb: str, name: str, user: str | None) -> DocumentInfo:
        info = find_document(self._store, kb, name, scan=True)
        if info is None:
            raise NoSuchDocument(name)
        check_owner(info, user)
        with self._writes.shared():
            self._store.deactivate(kb, info.name)
            self._store.delete_version(kb, info.version)
        self._query_cache.invalidate(kb)
        return info

    async def set_scope(
        self,
        kb: str,
        name: str,
        scope: str,
        *,
        user: str | None = None,
        unless_changed_from: str | None = None,
    ) -> DocumentInfo | None:
        """Let `scope` see the document `name` (rag/scopes.py): one manifest write, nothing embedded
        again. With `user`, only if that user uploaded it (else NotYourDocument). With
        `unless_changed_from`, only while its scope is still that one: None when it is not (someone
        chose meanwhile) and nothing was changed. Returns the document as it is now."""
        if not is_scope(scope):
            raise ValueError(f"not a scope: {scope!r}")
        async with self._doc_locks.hold((kb, name_key(name))):
            return await run_to_end(self._set_scope, kb, name, scope, user, unless_changed_from)

    def _set_scope(
        self, kb: str, name: str, scope: str, user: str | None, unless_changed_from: str | None
    ) -> DocumentInfo | None:
        info = find_document(self._store, kb, name, scan=True)
        if info is None:
            raise NoSuchDocument(name)
        check_owner(info, user)
        if unless_changed_from is not None and info.scope != unless_changed_from:
            return None
        if info.scope == scope:
            return info
        now = replace(info, scope=scope)
        with self._writes.shared():
            self._store.activate(kb, now)
        self._query_cache.invalidate(kb)
        log.info("scope_set", kb=kb, document=info.name, scope=scope)
        return now

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
            stats = self._stats(kb)
            with self._writes.shared():
                self._store.drop(kb)
            self._query_cache.invalidate(kb)
            return stats

        return await run_to_end(run)

    async def stats(self, kb: str, *, visibility: Visibility = EVERYTHING) -> KbStats:
        """The documents and passages of `kb` that `visibility` sees (by default all of them)."""
        return await asyncio.to_thread(self._stats, kb, visibility)

    def sizes(self) -> dict[str, KbStats]:
        """Documents and searchable chunks of every knowledge base, from the manifests. Blocks: call
        it in a worker thread (/metrics reads it in a thread of its own)."""
        return {kb: self._stats(kb) for kb in self._store.knowledge_bases()}

    def _stats(self, kb: str, visibility: Visibility = EVERYTHING) -> KbStats:
        docs = [d for d in self._store.documents(kb) if visibility.sees(d.scope)]
        return KbStats(kb=kb, documents=len(docs), chunks=sum(d.chunks for d in docs))

    # -- ask ---------------------------------------------------------------------------------
    # Searches and answers read the documents their `visibility` sees (rag/scopes.py): by default
    # the workspace's only; an operator's command passes EVERYTHING.
    async def search(
        self,
        kb: str,
        query: str,
        *,
        top_k: int | None = None,
        hybrid: bool | None = None,
        visibility: Visibility = WORKSPACE_ONLY,
    ) -> list[Passage]:
        with self._embedder.question():  # an ingest in this process pauses its model runs meanwhile
            with self._timed("embed"):
                vector = await asyncio.to_thread(self._embedder.embed_query, query)
            with self._timed("search"):
                return await asyncio.to_thread(self._search, kb, query, vector, top_k, hybrid, visibility)

    async def passages(
        self, kb: str, question: str, *, hybrid: bool | None = None, visibility: Visibility = WORKSPACE_ONLY
    ) -> list[Passage]:
        """What an answer is written from: twice the configured number of passages searched, and
        the better half kept, the passage whose sentence answers the question first (rag.focus)."""
        with self._embedder.question():
            with self._timed("embed"):
                vector = await asyncio.to_thread(self._embedder.embed_query, question)
            with self._timed("search"):
                return await asyncio.to_thread(self._focused, kb, question, vector, hybrid, visibility)

    def _focused(
        self, kb: str, query: str, vector: np.ndarray, hybrid: bool | None, visibility: Visibility
    ) -> list[Passage]:
        top_k = self._options.top_k
        found = self._search(kb, query, vector, top_k * FOCUS_DEPTH, hybrid, visibility)
        return self._focus.order(query, found, top_k)

    def _search(
        self,
        kb: str,
        query: str,
        vector: np.ndarray,
        top_k: int | None,
        hybrid: bool | None,
        visibility: Visibility,
    ) -> list[Passage]:
        options = self._options
        if top_k is not None:
            options = replace(options, top_k=top_k, candidates=max(options.candidates, top_k * 4))
        if hybrid is not None:
            options = replace(options, hybrid=hybrid)
        return self._searcher.search(kb, query, vector, options, visibility)

    async def ask(
        self,
        kb: str,
        question: str,
        *,
        history: Sequence[Turn] = (),
        on_delta: Callable[[str], Awaitable[None]] | None = None,
        visibility: Visibility = WORKSPACE_ONLY,
    ) -> Answer:
        # A follow-up is searched together with the question before it, which it often refers to.
        last_user = next((t.text for t in reversed(history) if t.role == "user"), "")
        query = f"{last_user}\n{question}" if last_user else question
        with self._timed("embed"):
            vector = await asyncio.to_thread(self._embedder.embed_query, query)
        # Answers are cached per what the asker may see there: never one built from passages another
        # place sees and this one does not.
        hybrid = self._options.hybrid
        generation, seen = await asyncio.to_thread(self._searcher.visible, kb, visibility, hybrid=hybrid)
        namespace = f"{kb}\n{seen.key}"
        if not history:
            cached = await asyncio.to_thread(self._query_cache.get, namespace, generation, vector)
            if cached is not None:
                return Answer(cached.text, cached.citations, cached.mode, cached.language, cached=True)
        with self._timed("search"):
            passages = await asyncio.to_thread(self._focused, kb, query, vector, None, seen)
        with self._timed("llm"):  # the extractive answerer too: the stage is "write the answer"
            answer = await self._answerer.answer(question, passages, history=history, on_delta=on_delta)
        if answer.mode == "llm" and not history:
            await asyncio.to_thread(self._query_cache.put, namespace, generation, vector, answer)
        return answer

    def cache_stats(self) -> dict[str, float]:
        emb = self._embedder.cache
        return {
            "embedding_cache_hits": emb.hits,
            "embedding_cache_misses": emb.misses,
            "query_cache_hits": self._query_cache.hits,
            "query_cache_misses": self._query_cache.misses,
        }
