"""The sentences of the retrieved passages that answer the question: scored with the embedding model
(the same one that ranked the passages) and the question's own words.

A passage is ~250 word pieces; the answer is often one sentence of it ("The SAIBK gene is 27,534
nucleotides long"). An answer written without a language model quotes those sentences rather than
whole passages with their heading lines and markup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.embed import SentenceEmbedder
from rag.keyword import tokenize
from rag.search import RRF_K
from rag.types import Passage

MAX_SENTENCES = 3
MARGIN = 0.08  # a second or third sentence is quoted only when it scores nearly as well as the best
LEXICAL_WEIGHT = 0.3  # share of the question's words a sentence holds, added to its cosine
MIN_WORDS = 4
MAX_SENTENCE_CHARS = 400
# The sentence ranking's weight against the search's ranking when passages are ordered for the model
# (rag.engine asks for twice the passages it gives and keeps the best half). Measured with
# `threadwise eval` (numbers@5, MRR) on covidqa and ntsb: 1.0 lifts both; 2.0 costs ntsb recall@5.
SENTENCE_WEIGHT = 1.0
MAX_SCORED = 24  # sentences embedded per question to order its passages (~8 of its own embeddings)

_SPLIT = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*•>]\s+|\d+[.)]\s+)|\*\*|__|`")


@dataclass(frozen=True)
class Highlight:
    passage: int  # index into the passages given
    sentence: str
    score: float


class SentenceHighlighter:
    """Picks the one to three sentences of the passages that best answer a question."""

    def __init__(self, embedder: SentenceEmbedder) -> None:
        self._embedder = embedder

    def __call__(self, question: str, passages: Sequence[Passage]) -> list[Highlight]:
        scored = self._scored(question, [(i, s) for i, p in enumerate(passages) for s in sentences(p.text)])
        return best(scored) if scored else []

    def order(self, question: str, passages: Sequence[Passage], keep: int) -> list[Passage]:
        """The `keep` passages that best answer the question, of `passages` in their search order:
        that order fused (by reciprocal rank) with the order of each passage's best sentence, so the
        passage holding the answer's sentence comes first and within what the model reads. A
        passage without a whole sentence (a table's rows, a list) is scored as one piece."""
        if len(passages) <= 1:
            return list(passages)
        pieces = [(i, s) for i, p in enumerate(passages) for s in sentences(p.text) or [_body(p.text)]]
        best_of = [float("-inf")] * len(passages)
        for h in self._scored(question, _likeliest(question, pieces)):
            best_of[h.passage] = max(best_of[h.passage], h.score)
        ranked = sorted(range(len(passages)), key=lambda i: -best_of[i])
        by_sentence = {i: rank for rank, i in enumerate(ranked)}
        fused = {i: 1 / (RRF_K + i + 1) + SENTENCE_WEIGHT / (RRF_K + by_sentence[i] + 1) for i in by_sentence}
        return [passages[i] for i in sorted(fused, key=lambda i: -fused[i])[:keep]]

    def _scored(self, question: str, found: list[tuple[int, str]]) -> list[Highlight]:
        if not found:
            return []
        vectors = self._embedder.embed_for_question([s for _, s in found])
        query = self._embedder.embed_query(question)
        words = set(tokenize(question))
        cosine = vectors @ query
        return [
            Highlight(i, s, float(c) + LEXICAL_WEIGHT * _overlap(words, s))
            for (i, s), c in zip(found, np.asarray(cosine), strict=True)
        ]


def best(scored: Sequence[Highlight]) -> list[Highlight]:
    """The best sentence and up to two more within MARGIN of it, in the passages' order."""
    ranked = sorted(scored, key=lambda h: -h.score)
    top = ranked[0].score
    chosen = [h for h in ranked[:MAX_SENTENCES] if h.score >= top - MARGIN]
    order = {id(h): n for n, h in enumerate(scored)}
    return sorted(chosen, key=lambda h: order[id(h)])


def sentences(text: str) -> list[str]:
    """The passage's sentences without its context lines (identity, heading path) and markup."""
    out = []
    for piece in _SPLIT.split(_without_context(text)):
        line = " ".join(_MARKUP.sub("", part).strip() for part in piece.splitlines())
        line = " ".join(line.split())
        if len(line.split()) >= MIN_WORDS:
            out.append(
                line
                if len(line) <= MAX_SENTENCE_CHARS
                else line[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"
            )
    return out


def _is_context(paragraph: str) -> bool:
    """The lines a chunk starts with (rag.chunk): its document's identity ("Title · name · codes")
    and heading path ("Setup > Linux"), or a bare title; never a sentence or a "Label: value" line."""
    lines = paragraph.strip().splitlines()
    if not 0 < len(lines) <= 2:
        return False
    if " · " in lines[0] or " > " in paragraph:
        return True
    line = lines[0].strip()
    return len(lines) == 1 and len(line) <= 120 and ":" not in line and not line.endswith((".", "?", "!"))


def _likeliest(question: str, pieces: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The MAX_SCORED pieces that hold the most of the question's words (none without any): the
    sentence that answers shares words with the question, and embedding every sentence of ten
    passages would cost a question ~40 times its own embedding."""
    words = set(tokenize(question))
    shared = [(len(words & set(tokenize(s))), n) for n, (_, s) in enumerate(pieces)]
    chosen = sorted((n for count, n in shared if count), key=lambda n: -shared[n][0])[:MAX_SCORED]
    return [pieces[n] for n in sorted(chosen)]


def _body(text: str) -> str:
    """A passage without its context lines, as one piece of at most MAX_SENTENCE_CHARS."""
    return " ".join(_without_context(text).split())[:MAX_SENTENCE_CHARS]


def _without_context(text: str) -> str:
    paragraphs = text.split("\n\n")
    if len(paragraphs) > 1 and _is_context(paragraphs[0]):
        paragraphs = paragraphs[1:]
    return "\n\n".join(paragraphs)


def _overlap(words: set[str], sentence: str) -> float:
    if not words:
        return 0.0
    return len(words & set(tokenize(sentence))) / len(words)
