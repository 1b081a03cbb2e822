"""A BM25 keyword index, so identifiers, error codes and API names are found exactly.

Tokens keep identifiers whole (`ERR_CONN_4021`, `getUserById`, `v2.3.1`) and also add their parts,
so both the whole name and a part of it match. The index is an immutable sparse matrix of BM25
weights: a query is a sum of a few columns, a millisecond even at 100k chunks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from scipy import sparse

_WORD = re.compile(r"[^\W_](?:[\w.\-]*[^\W_])?|_+\w+", re.UNICODE)
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_]+", re.UNICODE)
_STOPWORDS = frozenset(
    """
    a an and are as at be but by can could did do does for from had has have how i if in into is it its
    may me my no not of on or our should so such than that the their them then there these they this to
    was we were what when where which who whom why will with would you your
    """.split()
)
K1 = 1.2
B = 0.75


def tokenize(text: str) -> list[str]:
    """Lower-cased terms: whole identifiers plus their parts; stopwords dropped."""
    out: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group()
        lower = word.lower()
        if lower not in _STOPWORDS:
            out.append(lower)
        pieces = [p for p in re.split(r"[._\-]+", word) if p]
        parts = {p.lower() for p in pieces} | {c.lower() for p in pieces for c in _PARTS.findall(p)}
        parts.discard(lower)
        out.extend(sorted(p for p in parts if p not in _STOPWORDS))
    return out


def is_identifier(term: str) -> bool:
    """A term that names something exactly: has a digit, an underscore, a dot or mixed case inside."""
    return bool(re.search(r"\d|_|\w[.\-]\w", term)) or (term != term.lower() and term != term.capitalize())


class KeywordIndex:
    """BM25 over a fixed list of documents (chunk ids and their texts)."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self.ids = list(ids)
        self._vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.float32)
        for row, text in enumerate(texts):
            terms = tokenize(text)
            lengths[row] = len(terms)
            tf: dict[int, int] = {}
            for term in terms:
                col = self._vocab.setdefault(term, len(self._vocab))
                tf[col] = tf.get(col, 0) + 1
            rows.extend([row] * len(tf))
            cols.extend(tf.keys())
            counts.extend(tf.values())
        n = len(texts)
        shape = (n, max(1, len(self._vocab)))
        tf_matrix = sparse.csc_matrix(
            (np.asarray(counts, dtype=np.float32), (np.asarray(rows), np.asarray(cols))), shape=shape
        )
        df = np.diff(tf_matrix.indptr).astype(np.float32)
        self._idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        avg = float(lengths.mean()) if n else 1.0
        norm = K1 * (1 - B + B * lengths / max(avg, 1e-9))
        # BM25 weight per (chunk, term): idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg)).
        data = tf_matrix.data
        row_of = tf_matrix.indices
        col_of = np.repeat(np.arange(shape[1]), np.diff(tf_matrix.indptr))
        tf_matrix.data = self._idf[col_of] * data * (K1 + 1) / (data + norm[row_of])
        self._weights = tf_matrix

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        cols = sorted({self._vocab[t] for t in tokenize(query) if t in self._vocab})
        if not cols or not self.ids:
            return []
        scores = np.asarray(self._weights[:, cols].sum(axis=1)).ravel()
        k = min(k, int(np.count_nonzero(scores)))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self.ids[i], float(scores[i])) for i in top]

    def idf(self, term: str) -> float:
        col = self._vocab.get(term)
        return float(self._idf[col]) if col is not None else math.inf
