"""Hybrid retrieval: vector similarity and BM25 keywords, fused by reciprocal rank."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from rag.identity import names, question_terms, words_of
from rag.keyword import Encoded, KeywordIndex, Vocabulary, is_identifier, tokenize
from rag.scopes import Visibility
from rag.store import StoredChunk, VectorStore, version_of
from rag.types import DocumentInfo, Passage

# Reciprocal-rank constant. The textbook 60 flattens the top of lists only ~40 long; 10 keeps
# first places decisive (covidqa, full set: recall@5 0.86 with 10, 0.82 with 60).
RRF_K = 10
# The document ranking's weight in the fusion, against 1 for the vector and keyword rankings: enough
# to lift the named document's passages over the same passage of a similar document, not so much
# that a name shared by chance outranks the passage that answers (covidqa sample: 1.0 costs 0.02
# recall@1 against 0.5; ntsb: 0.5 gains 0.01).
DOCUMENT_WEIGHT = 0.5

T = TypeVar("T")


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
    identities: dict[str, str]  # each version's identity: the first line of its passages
    identity_index: KeywordIndex | None  # over `identities`, to rank documents
    scopes: frozenset[str]  # those of its documents
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # keyword rows a visibility may read
    row_scopes: np.ndarray | None = None  # per keyword row, the number of its document's scope
    scope_numbers: dict[str, int] = field(default_factory=dict)

    def rows(self, seen: Visibility) -> np.ndarray | None:
        """The keyword index's rows of documents `seen` sees (None: all of them). Made once per
        visibility and view, with numpy: a thousand channels' first questions each pay ~1 ms."""
        if self.keywords is None or seen.everything:
            return None
        mask = self.masks.get(seen.key)
        if mask is None:
            if self.row_scopes is None:
                numbers = self.scope_numbers
                of_version = {v: numbers.setdefault(d.scope, len(numbers)) for v, d in self.documents.items()}
                rows = (of_version.get(version_of(cid), -1) for cid in self.keywords.ids)
                self.row_scopes = np.fromiter(rows, np.int32, len(self.keywords.ids))
            allowed = [n for scope, n in self.scope_numbers.items() if seen.sees(scope)]
            mask = np.isin(self.row_scopes, allowed)
            self.masks[seen.key] = mask
        return mask


class HybridSearcher:
    """Searches one knowledge base as its manifest says it is now.

    Per knowledge base it keeps the active document versions and the keyword index, rebuilt when
    the manifest's generation changes (also when another process changed it).
    """

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._views: dict[str, _KbView] = {}
        self._lock = threading.Lock()

    def visible(self, kb: str, visibility: Visibility, *, hybrid: bool) -> tuple[str, Visibility]:
        """The knowledge base's generation now, and `visibility` narrowed to the scopes it holds
        (Visibility.among): what an answer asked there is cached under. The view read is the one
        the search that follows uses."""
        view = self._view(kb, hybrid)
        return view.generation, visibility.among(view.scopes)

    def search(
        self, kb: str, query: str, vector: np.ndarray, options: SearchOptions, visibility: Visibility
    ) -> list[Passage]:
        """The passages to answer from, of the documents `visibility` sees: the store and the keyword
        index filter by scope, so other places' documents take no candidate's place. Candidates are
        ranked by id alone (a chunk's id starts with its version, which names its document); only
        the chunks finally kept are read from the store."""
        view = self._view(kb, options.hybrid)
        seen = visibility.among(view.scopes)
        active = {v: d for v, d in view.documents.items() if seen.sees(d.scope)}
        if not active:
            return []
        n = min(options.candidates, max(1, sum(d.chunks for d in active.values())))
        whole = len(active) == len(view.documents)  # nothing to filter out
        within = None if whole else {v: d.chunks for v, d in active.items()}
        nearest = self._store.nearest(kb, vector, n, within=within)
        vector_hits = [(cid, sim) for cid, sim in nearest if version_of(cid) in active]
        rankings = [[cid for cid, _ in vector_hits]]
        named: set[str] = set()  # versions of the documents whose identity the question names
        if options.hybrid and view.keywords is not None:
            rows = None if whole else view.rows(seen)
            keyword_hits = view.keywords.search(query, options.candidates, rows=rows)
            rankings.append([cid for cid, _ in keyword_hits])
            by_document, named = _by_document(view, active, query, fuse(rankings), options.candidates, rows)
            rankings.append(by_document)
        scores = fuse(rankings, weights=[1.0, 1.0, DOCUMENT_WEIGHT][: len(rankings)])
        ordered = sorted(scores, key=scores.__getitem__, reverse=True)
        ranked = [cid for cid in ordered if version_of(cid) in active]
        # The nearest vector hit is the most similar chunk of all: it alone decides "close enough".
        close = bool(vector_hits) and vector_hits[0][1] >= options.min_similarity
        if not close:
            exact = [t for t in set(tokenize(query)) if is_identifier(t)]
            hits = self._read(kb, view, ranked)
            if not any(_names_identifier(hit, exact) for hit in hits.values()):
                return []  # nothing close enough to call an answer: say so rather than guess
        per_document = _per_document(query, named, options)

        def document(cid: str) -> str:
            return active[version_of(cid)].name

        while True:
            chosen = spread(ranked, options.top_k, per_document, document=document)
            hits = self._read(kb, view, chosen)
            if len(hits) == len(chosen):
                return [_passage(hits[cid], scores[cid]) for cid in chosen]
            # A chunk deleted since the view was made (its document replaced meanwhile): without it.
            ranked = [cid for cid in ranked if cid in hits or cid not in chosen]

    def _read(self, kb: str, view: _KbView, ids: Sequence[str]) -> dict[str, StoredChunk]:
        """The chunks of `ids` that the store still holds, of versions the view counts as active."""
        hits = self._store.chunks_by_id(kb, ids)
        return {hit.id: hit for hit in hits if hit.version in view.documents}

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
            identities = {v: i for v, i in (view.identities if view else {}).items() if v in documents}
            keywords = identity_index = None
            if hybrid:
                keywords = self._rebuild_keywords(kb, documents, vocabulary, encoded, identities)
                versions = sorted(identities)
                identity_index = KeywordIndex.from_texts(versions, [identities[v] for v in versions])
            scopes = frozenset(d.scope for d in documents.values())
            view = _KbView(
                generation, documents, keywords, vocabulary, encoded, identities, identity_index, scopes
            )
            self._views[kb] = view
            return view

    def _rebuild_keywords(
        self,
        kb: str,
        documents: dict[str, DocumentInfo],
        vocabulary: Vocabulary,
        encoded: dict[str, Encoded],
        identities: dict[str, str],
    ) -> KeywordIndex:
        known_versions = {cid.split(":", 1)[0] for cid in encoded}
        for cid in [c for c in encoded if c.split(":", 1)[0] not in documents]:
            del encoded[cid]
        new_versions = [v for v in documents if v not in known_versions]
        for chunk in self._store.chunks_of_versions(kb, new_versions):
            encoded[chunk.id] = vocabulary.encode(chunk.text)
            identities.setdefault(chunk.version, chunk.text.split("\n", 1)[0])
        ids = sorted(encoded)
        return KeywordIndex(ids, [encoded[i] for i in ids], vocabulary)

    def identities(self, kb: str) -> dict[str, str]:
        """Each active document's identity line, by document name: what retrieval takes it to be about."""
        view = self._view(kb, hybrid=True)
        return {d.name: view.identities.get(version, "") for version, d in view.documents.items()}


def _per_document(query: str, named: set[str], options: SearchOptions) -> int:
    """How many passages one document may take while others qualify: one each for a question across
    documents; all of them when the question names one document; else the configured spread."""
    if spans_documents(query):
        return 1
    if len(named) == 1:
        return options.top_k
    return options.per_document


def _by_document(
    view: _KbView,
    active: dict[str, DocumentInfo],
    query: str,
    passage_scores: dict[str, float],
    n: int,
    rows: np.ndarray | None,
) -> tuple[list[str], set[str]]:
    """Passages of the documents the question names, best documents first, then by passage rank; and
    the versions of those documents.

    The documents named are those whose identity states the most of the question's names, codes
    and dates, if that is two or more ("Piper N112ED", "Acme … Q2 2023": not Acme's Q1 report,
    which states two of three), or one that no other document's identity states ("Madill"). One
    topical word that several documents share ("SARS-CoV") names none of them: the passage ranking
    alone decides there."""
    terms = question_terms(query)
    if not terms or view.identity_index is None or view.keywords is None:
        return [], set()
    query_terms = " ".join(terms).replace("|", " ")
    scored = [(v, s) for v, s in view.identity_index.search(query_terms, len(view.identities)) if v in active]
    stated = {v: {t for t in terms if names(words_of(view.identities[v]), t)} for v, _ in scored}
    holders = {t: sum(t in s for s in stated.values()) for t in terms}
    most = max((len(s) for s in stated.values()), default=0)
    best = {
        version: score
        for version, score in scored
        if len(stated[version]) == most and (most >= 2 or any(holders[t] == 1 for t in stated[version]))
    }
    if not best or len(best) > max(2, len(active) // 2):
        return [], set()  # named by none, or by terms most documents share
    # The named documents' passages among the candidates, and their passages that state the terms.
    # In the passage ranking's order, then the keyword hits': a tie below keeps that order, the same
    # in every process (a set's order changes with the interpreter's string hashing).
    stating = [cid for cid, _ in view.keywords.search(query_terms, n * 4, rows=rows)]
    candidates = dict.fromkeys([*passage_scores, *stating])
    ranked = [cid for cid in candidates if cid.split(":", 1)[0] in best]
    ranked.sort(key=lambda cid: (-best[cid.split(":", 1)[0]], -passage_scores.get(cid, 0.0)))
    return ranked[:n], set(best)


# Questions about several documents at once: the best passage of each rather than two of one.
_SPANNING = re.compile(
    r"\b(?:compare[ds]?|comparison|versus|vs\.?|over time|trend|each|every|across|both|"
    r"which (?:reports|documents|files|quarters|years|companies|policies|versions)|which of the \w+s|"
    r"(?:all|any) (?:of )?the (?:reports|documents|files|quarters|years|companies))\b",
    re.IGNORECASE,
)


def spans_documents(question: str) -> bool:
    """Whether the question asks across documents ("compare A and B", "each quarter", "which reports")."""
    return _SPANNING.search(question) is not None


def fuse(
    rankings: Sequence[Sequence[str]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Reciprocal rank fusion: each ranking adds weight / (k + rank) to the ids it ranks."""
    scores: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        weight = weights[i] if weights is not None else 1.0
        for rank, cid in enumerate(ranking):
            scores[cid] = scores.get(cid, 0.0) + weight / (k + rank + 1)
    return scores


def spread(
    hits: Sequence[T], top_k: int, per_document: int, *, document: Callable[[T], str] | None = None
) -> list[T]:
    """The best `top_k` hits, at most `per_document` from one document while others qualify.

    An answer drawn from several sources is more often right than one drawn from the single
    document that happened to rank first; when fewer documents qualify, the rest are filled in
    rank order, so a knowledge base of one document still gets `top_k` passages. `document` names a
    hit's document (by default its `.document`).
    """
    document_of: Callable[[Any], str] = document or (lambda hit: hit.document)
    chosen: list[T] = []
    skipped: list[T] = []
    count: dict[str, int] = {}
    for hit in hits:
        if len(chosen) == top_k:
            break
        name = document_of(hit)
        if count.get(name, 0) < per_document:
            chosen.append(hit)
            count[name] = count.get(name, 0) + 1
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
