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
from rag.types import Passage

MAX_SENTENCES = 3
MARGIN = 0.08  # a second or third sentence is quoted only when it scores nearly as well as the best
LEXICAL_WEIGHT = 0.3  # share of the question's words a sentence holds, added to its cosine
MIN_WORDS = 4
MAX_SENTENCE_CHARS = 400

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
        found = [(i, s) for i, p in enumerate(passages) for s in sentences(p.text)]
        if not found:
            return []
        vectors = self._embedder.embed([s for _, s in found])
        query = self._embedder.embed_query(question)
        words = set(tokenize(question))
        cosine = vectors @ query
        scored = [
            Highlight(i, s, float(c) + LEXICAL_WEIGHT * _overlap(words, s))
            for (i, s), c in zip(found, np.asarray(cosine), strict=True)
        ]
        return best(scored)


def best(scored: Sequence[Highlight]) -> list[Highlight]:
    """The best sentence and up to two more within MARGIN of it, in the passages' order."""
    ranked = sorted(scored, key=lambda h: -h.score)
    top = ranked[0].score
    chosen = [h for h in ranked[:MAX_SENTENCES] if h.score >= top - MARGIN]
    order = {id(h): n for n, h in enumerate(scored)}
    return sorted(chosen, key=lambda h: order[id(h)])


def sentences(text: str) -> list[str]:
    """The passage's sentences without its context lines (identity, heading path) and markup."""
    paragraphs = text.split("\n\n")
    if len(paragraphs) > 1 and _is_context(paragraphs[0]):
        paragraphs = paragraphs[1:]
    out = []
    for piece in _SPLIT.split("\n\n".join(paragraphs)):
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


def _overlap(words: set[str], sentence: str) -> float:
    if not words:
        return 0.0
    return len(words & set(tokenize(sentence))) / len(words)
