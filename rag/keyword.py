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
TYPO_MIN_LENGTH = 5  # shorter words are too often another real word one edit away
_LATIN = "abcdefghijklmnopqrstuvwxyzàáâäãåæçèéêëìíîïñòóôöõøœßùúûüýÿ"


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


Encoded = tuple[np.ndarray, np.ndarray]  # a chunk's distinct term ids and their counts


class Vocabulary:
    """Term ids, append-only, so a chunk encoded once stays valid for every later index."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def encode(self, text: str) -> Encoded:
        terms = tokenize(text)
        ids = np.fromiter((self._ids.setdefault(t, len(self._ids)) for t in terms), np.int32, len(terms))
        unique, counts = np.unique(ids, return_counts=True)
        return unique, counts.astype(np.float32)

    def get(self, term: str) -> int | None:
        return self._ids.get(term)


class KeywordIndex:
    """BM25 over a fixed list of chunks, given as ids and their encoded terms.

    Built from encodings rather than texts, so a change to a large knowledge base re-tokenises
    only the new chunks: the rest is array concatenation.
    """

    def __init__(self, ids: Sequence[str], encoded: Sequence[Encoded], vocabulary: Vocabulary) -> None:
        self.ids = list(ids)
        self._vocab = vocabulary
        n = len(self.ids)
        width = max(1, len(vocabulary))
        per_row = np.fromiter((len(e[0]) for e in encoded), np.int64, n)
        rows = np.repeat(np.arange(n), per_row)
        cols = np.concatenate([e[0] for e in encoded]) if n else np.zeros(0, np.int32)
        counts = np.concatenate([e[1] for e in encoded]) if n else np.zeros(0, np.float32)
        lengths = np.bincount(rows, weights=counts, minlength=n).astype(np.float32)
        tf_matrix = sparse.csc_matrix((counts, (rows, cols)), shape=(n, width))
        df = np.diff(tf_matrix.indptr).astype(np.float32)
        self._df = df
        self._idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        avg = float(lengths.mean()) if n else 1.0
        norm = K1 * (1 - B + B * lengths / max(avg, 1e-9))
        # BM25 weight per (chunk, term): idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg)).
        data = tf_matrix.data
        col_of = np.repeat(np.arange(width), np.diff(tf_matrix.indptr))
        tf_matrix.data = self._idf[col_of] * data * (K1 + 1) / (data + norm[tf_matrix.indices])
        self._weights = tf_matrix

    @classmethod
    def from_texts(cls, ids: Sequence[str], texts: Sequence[str]) -> KeywordIndex:
        vocabulary = Vocabulary()
        return cls(ids, [vocabulary.encode(t) for t in texts], vocabulary)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int, *, rows: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The `k` best chunks for `query`; `rows`: a mask of the chunks that may be returned."""
        cols = sorted({c for c in map(self._column, tokenize(query)) if c is not None})
        if not cols or not self.ids:
            return []
        scores = np.asarray(self._weights[:, cols].sum(axis=1)).ravel()
        if rows is not None:
            scores = np.where(rows, scores, 0.0)
        k = min(k, int(np.count_nonzero(scores)))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self.ids[i], float(scores[i])) for i in top]

    def _column(self, term: str) -> int | None:
        """The term's column; for a misspelt word no chunk has, the column of the most common word
        one edit away (`carageenan` finds `carrageenan`). Identifiers are never corrected."""
        col = self._vocab.get(term)
        if col is not None and col < len(self._df) and self._df[col] > 0:
            return col
        if len(term) < TYPO_MIN_LENGTH or not term.isalpha():
            return None
        near = (self._vocab.get(v) for v in _one_edit(term))
        known = [c for c in near if c is not None and c < len(self._df) and self._df[c] > 0]
        return max(known, key=lambda c: (self._df[c], -c)) if known else None

    def idf(self, term: str) -> float:
        col = self._vocab.get(term)
        return float(self._idf[col]) if col is not None and col < len(self._idf) else math.inf


def _one_edit(word: str) -> set[str]:
    """Every string one deletion, transposition, substitution or insertion away from `word`."""
    letters = set(_LATIN) | set(word)
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    edits = {a + b[1:] for a, b in splits if b}
    edits |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    edits |= {a + c + b[1:] for a, b in splits if b for c in letters}
    edits |= {a + c + b for a, b in splits for c in letters}
    edits.discard(word)
    return edits
