"""Hybrid retrieval: vector similarity and BM25 keywords, fused by reciprocal rank."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.keyword import KeywordIndex, is_identifier, tokenize
from rag.store import KnowledgeStore, StoredChunk
from rag.types import DocumentInfo, Passage

RRF_K = 60


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 5
    min_similarity: float = 0.2  # below this a vector hit is not evidence (all-MiniLM cosine)
    hybrid: bool = True
    candidates: int = 40


@dataclass
class _KbView:
    generation: str
    documents: dict[str, DocumentInfo]  # by active version
    keywords: KeywordIndex | None
    texts: dict[str, str]  # chunk texts by id, kept so a change fetches only new versions


class HybridSearcher:
    """Searches one knowledge base as its manifest says it is now.

    Per knowledge base it keeps the active document versions and the keyword index, rebuilt when
    the manifest's generation changes (also when another process changed it).
    """

    def __init__(self, store: KnowledgeStore) -> None:
        self._store = store
        self._views: dict[str, _KbView] = {}
        self._lock = threading.Lock()

    def generation(self, kb: str) -> str:
        return self._store.generation(kb)

    def search(self, kb: str, query: str, vector: np.ndarray, options: SearchOptions) -> list[Passage]:
        view = self._view(kb, options.hybrid)
        if not view.documents:
            return []
        n = min(options.candidates, max(1, sum(d.chunks for d in view.documents.values())))
        vector_hits = [h for h in self._store.query(kb, vector, n) if h.version in view.documents]
        ranked: dict[str, float] = {}
        for rank, hit in enumerate(vector_hits):
            ranked[hit.id] = 1.0 / (RRF_K + rank + 1)
        keyword_ids: list[str] = []
        if options.hybrid and view.keywords is not None:
            keyword_ids = [cid for cid, _ in view.keywords.search(query, options.candidates)]
            for rank, cid in enumerate(keyword_ids):
                ranked[cid] = ranked.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
        by_id = {h.id: h for h in vector_hits}
        missing = [cid for cid in keyword_ids if cid not in by_id]
        for hit in self._store.chunks_by_id(kb, missing, vector):
            if hit.version in view.documents:
                by_id[hit.id] = hit
        exact = [t for t in set(tokenize(query)) if is_identifier(t)]
        passages = []
        for cid in sorted(ranked, key=ranked.__getitem__, reverse=True):
            found = by_id.get(cid)
            if found is None or not _relevant(found, options.min_similarity, exact):
                continue
            passages.append(_passage(found, ranked[cid]))
            if len(passages) == options.top_k:
                break
        return passages

    def _view(self, kb: str, hybrid: bool) -> _KbView:
        generation = self._store.generation(kb)
        with self._lock:
            view = self._views.get(kb)
            if view is not None and view.generation == generation and (view.keywords or not hybrid):
                return view
            documents = {d.version: d for d in self._store.documents(kb)}
            texts = dict(view.texts) if view else {}
            keywords = None
            if hybrid:
                keywords = self._rebuild_keywords(kb, documents, texts)
            view = _KbView(generation, documents, keywords, texts)
            self._views[kb] = view
            return view

    def _rebuild_keywords(
        self, kb: str, documents: dict[str, DocumentInfo], texts: dict[str, str]
    ) -> KeywordIndex:
        known_versions = {cid.split(":", 1)[0] for cid in texts}
        for cid in [c for c in texts if c.split(":", 1)[0] not in documents]:
            del texts[cid]
        new_versions = [v for v in documents if v not in known_versions]
        for chunk in self._store.chunks_of_versions(kb, new_versions):
            texts[chunk.id] = chunk.text
        ids = sorted(texts)
        return KeywordIndex(ids, [texts[i] for i in ids])

    def forget(self, kb: str) -> None:
        with self._lock:
            self._views.pop(kb, None)


def _relevant(hit: StoredChunk, min_similarity: float, exact_terms: Sequence[str]) -> bool:
    if hit.similarity >= min_similarity:
        return True
    if not exact_terms:
        return False
    # An identifier in the question found verbatim in the chunk is evidence however low the cosine.
    terms = set(tokenize(hit.text))
    return any(t in terms for t in exact_terms)


def _passage(hit: StoredChunk, score: float) -> Passage:
    return Passage(
        text=hit.text, document=hit.document, locator=hit.locator, score=score, chunk_id=hit.id, url=hit.url
    )
