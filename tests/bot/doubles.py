"""Test doubles of the chat side's ports, shared by the tests of the core."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bot.console.files import LocalFileFetcher
from bot.core.ports import FileFetcher, ReplySender
from rag.embed import SentenceEmbedder

ASK_HOW = "ask me in this test"


@dataclass(frozen=True)
class Place:
    """An address in a test's own terms."""

    channel: str
    thread_ts: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Place:
        return cls(**data)


@dataclass(frozen=True)
class Shown:
    """A message a test sender showed (its handle)."""

    ts: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shown | None:
        return cls(**data) if data else None


@dataclass
class Outlet:
    """A platform's outbound part as the core sees it, made of a test's own sender and fetcher."""

    name: str
    sender: ReplySender
    fetcher: FileFetcher = field(default_factory=LocalFileFetcher)
    ask_how: str = ASK_HOW

    def read_address(self, data: dict[str, Any]) -> Place:
        return Place.from_dict(data)

    def read_handle(self, data: dict[str, Any]) -> Shown | None:
        return Shown.from_dict(data)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


_WORD = re.compile(r"\w+")


class FakeEmbedder(SentenceEmbedder):
    """The embedder with no model: a text's vector is its words hashed into 384 dimensions, so texts
    that share words are near, and a word is a token. Deterministic, and nothing to load: for tests
    of the chat side, where what matters is that a question finds the passage that shares its words.
    (Counts `embedded_texts` as the real one does.)"""

    def __init__(self) -> None:
        super().__init__(cache_size=10_000, cache_ttl=0)

    @property
    def loaded(self) -> bool:
        return True

    def load(self) -> None:
        pass

    def prepare_queries(self) -> str:
        return "torch"  # no model, no runtime to set up

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]

    def embed_query(self, text: str) -> np.ndarray:
        return self._vectors([text])[0]

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        vectors = self._vectors(list(texts))
        if progress:
            progress(len(texts))
        return vectors

    def embed_for_question(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors(list(texts))

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._vectors(texts)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        self.embedded_texts += len(texts)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                slot = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
                vectors[row, slot % self.dimension] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)
