"""Hybrid retrieval: vector similarity and BM25 keywords, fused by reciprocal rank."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.identity import question_terms
from rag.keyword import Encoded, KeywordIndex, Vocabulary, is_identifier, tokenize
from rag.store import KnowledgeStore, StoredChunk
from rag.types import DocumentInfo, Passage

# Reciprocal-rank constant. The textbook 60 flattens the top of lists only ~40 long; 10 keeps
# first places decisive (covidqa, full set: recall@5 0.86 with 10, 0.82 with 60).
RRF_K = 10
# Documents whose identity matches the question at least this share as well as the best one's are
# ranked as matching (a question naming Acme and Q2 2023 matches Acme's Q2 2023 report far better
# than Acme's Q1 or Initech's Q2).
DOCUMENT_SHARE = 0.5


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 5
    min_similarity: float = 0.2  # the best hit must reach this cosine (or match an identifier)
    hybrid: bool = True
    candidates: int = 60
    per_document: int = 2


@dataclass
class _KbView:
    generation: str
    documents: dict[str, DocumentInfo]  # by active version
    keywords: KeywordIndex | None
    vocabulary: Vocabulary
    encoded: dict[str, Encoded]  # terms per chunk id, kept so a change encodes only new chunks


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
        rankings = [[h.id for h in vector_hits]]
        if options.hybrid and view.keywords is not None:
            keyword_hits = view.keywords.search(query, options.candidates)
            rankings.append([cid for cid, _ in keyword_hits])
            rankings.append(
                _by_document(view.keywords, query, fuse(rankings), options.candidates, len(view.documents))
            )
        scores = fuse(rankings)
        by_id = {h.id: h for h in vector_hits}
        missing = [cid for cid in scores if cid not in by_id]
        for hit in self._store.chunks_by_id(kb, missing):
            if hit.version in view.documents:
                by_id[hit.id] = hit
        exact = [t for t in set(tokenize(query)) if is_identifier(t)]
        ranked = [by_id[cid] for cid in sorted(scores, key=scores.__getitem__, reverse=True) if cid in by_id]
        # The nearest vector hit is the most similar chunk of all: it alone decides "close enough".
        close = bool(vector_hits) and vector_hits[0].similarity >= options.min_similarity
        if not close and not any(_names_identifier(hit, exact) for hit in ranked):
            return []  # nothing close enough to call an answer: say so rather than guess
        chosen = spread(ranked, options.top_k, options.per_document)
        return [_passage(hit, scores[hit.id]) for hit in chosen]

    def warm(self, kb: str) -> None:
        """Load the manifest and build the keyword index now (seconds for 100k chunks), not on a question."""
        self._view(kb, hybrid=True)

    def _view(self, kb: str, hybrid: bool) -> _KbView:
        generation = self._store.generation(kb)
        with self._lock:
            view = self._views.get(kb)
            if view is not None and view.generation == generation and (view.keywords or not hybrid):
                return view
            documents = {d.version: d for d in self._store.documents(kb)}
            vocabulary = view.vocabulary if view else Vocabulary()
            encoded = dict(view.encoded) if view else {}
            keywords = None
            if hybrid:
                keywords = self._rebuild_keywords(kb, documents, vocabulary, encoded)
            view = _KbView(generation, documents, keywords, vocabulary, encoded)
            self._views[kb] = view
            return view

    def _rebuild_keywords(
        self,
        kb: str,
        documents: dict[str, DocumentInfo],
        vocabulary: Vocabulary,
        encoded: dict[str, Encoded],
    ) -> KeywordIndex:
        known_versions = {cid.split(":", 1)[0] for cid in encoded}
        for cid in [c for c in encoded if c.split(":", 1)[0] not in documents]:
            del encoded[cid]
        new_versions = [v for v in documents if v not in known_versions]
        for chunk in self._store.chunks_of_versions(kb, new_versions):
            encoded[chunk.id] = vocabulary.encode(chunk.text)
        ids = sorted(encoded)
        return KeywordIndex(ids, [encoded[i] for i in ids], vocabulary)

    def forget(self, kb: str) -> None:
        with self._lock:
            self._views.pop(kb, None)


def _by_document(
    keywords: KeywordIndex, query: str, passage_scores: dict[str, float], n: int, documents: int
) -> list[str]:
    """Passages ranked by how well their document's identity matches the question's names, codes and
    dates: a document scores the best keyword score of those terms among its passages (every passage
    carries its document's identity line). Within a document, the passage ranking decides."""
    terms = question_terms(query)
    if not terms:
        return []
    hits = keywords.search(terms, n * 8)
    best: dict[str, float] = {}
    for cid, score in hits:
        version = cid.split(":", 1)[0]
        best[version] = max(best.get(version, 0.0), score)
    top = max(best.values(), default=0.0)
    best = {v: score for v, score in best.items() if score >= DOCUMENT_SHARE * top}
    if len(best) > max(2, documents // 2):
        return []  # terms most documents have tell none of them apart
    candidates = {cid for cid, _ in hits} | set(passage_scores)
    ranked = [cid for cid in candidates if cid.split(":", 1)[0] in best]
    ranked.sort(key=lambda cid: (-best[cid.split(":", 1)[0]], -passage_scores.get(cid, 0.0)))
    return ranked[:n]


def fuse(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: each ranking adds 1 / (k + rank) to the ids it ranks."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, cid in enumerate(ranking):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + rank + 1)
    return scores


def spread(hits: Sequence[StoredChunk], top_k: int, per_document: int) -> list[StoredChunk]:
    """The best `top_k` hits, at most `per_document` from one document while others qualify.

    An answer drawn from several sources is more often right than one drawn from the single
    document that happened to rank first; when fewer documents qualify, the rest are filled in
    rank order, so a knowledge base of one document still gets `top_k` passages.
    """
    chosen: list[StoredChunk] = []
    skipped: list[StoredChunk] = []
    count: dict[str, int] = {}
    for hit in hits:
        if len(chosen) == top_k:
            break
        if count.get(hit.document, 0) < per_document:
            chosen.append(hit)
            count[hit.document] = count.get(hit.document, 0) + 1
        else:
            skipped.append(hit)
    chosen.extend(skipped[: top_k - len(chosen)])
    order = {id(h): i for i, h in enumerate(hits)}
    return sorted(chosen, key=lambda h: order[id(h)])


def _names_identifier(hit: StoredChunk, exact_terms: Sequence[str]) -> bool:
    """An identifier of the question found verbatim in the chunk: evidence however low the cosine."""
    if not exact_terms:
        return False
    terms = set(tokenize(hit.text))
    return any(t in terms for t in exact_terms)


def _passage(hit: StoredChunk, score: float) -> Passage:
    return Passage(
        text=hit.text, document=hit.document, locator=hit.locator, score=score, chunk_id=hit.id, url=hit.url
    )
