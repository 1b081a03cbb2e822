"""Small in-memory caches: an LRU with a time-to-live, and the semantic query cache.

`QueryCache` is the query cache's interface; rag/redis_cache.py has the version several processes share.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A thread-safe LRU cache whose entries also expire after `ttl` seconds (0 = never)."""

    def __init__(self, *, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or (self._ttl and self._clock() - item[0] > self._ttl):
                if item is not None:
                    del self._items[key]
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[1]

    def put(self, key: K, value: V) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._items[key] = (self._clock(), value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class QueryCache(Protocol[V]):
    """Earlier answers by question vector, per knowledge base and knowledge-base generation.

    Called from worker threads (the engine keeps the event loop free), so implementations are
    thread-safe and may block. `hits`/`misses` count this process's lookups.
    """

    hits: int
    misses: int

    def get(self, kb: str, generation: str, vector: np.ndarray) -> V | None:
        """The value of the most similar cached question at or above the threshold, else None."""
        ...

    def put(self, kb: str, generation: str, vector: np.ndarray, value: V) -> None: ...

    def invalidate(self, kb: str) -> None:
        """Forget every entry of `kb`."""
        ...


@dataclass
class _Entry(Generic[V]):
    vector: np.ndarray
    value: V
    stamp: float


class SemanticCache(Generic[V]):
    """Answers to earlier questions, found again by question similarity, per knowledge base.

    A hit needs cosine similarity >= `threshold` with a cached question of the same knowledge base
    *and* the same knowledge-base generation, so any change to a knowledge base empties its cache.
    Vectors must be L2-normalised.
    """

    def __init__(
        self, *, size: int, ttl: float, threshold: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._ttl = ttl
        self._threshold = threshold
        self._clock = clock
        self._entries: dict[str, tuple[str, list[_Entry[V]]]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, kb: str, generation: str, vector: np.ndarray) -> V | None:
        with self._lock:
            entries = self._live(kb, generation)
            best: _Entry[V] | None = None
            best_sim = self._threshold
            for entry in entries:
                sim = float(np.dot(entry.vector, vector))
                if sim >= best_sim:
                    best, best_sim = entry, sim
            if best is None:
                self.misses += 1
                return None
            self.hits += 1
            return best.value

    def put(self, kb: str, generation: str, vector: np.ndarray, value: V) -> None:
        if self._size <= 0:
            return
        with self._lock:
            entries = self._live(kb, generation)
            entries.append(_Entry(vector, value, self._clock()))
            del entries[: max(0, len(entries) - self._size)]
            self._entries[kb] = (generation, entries)

    def invalidate(self, kb: str) -> None:
        """Forget `kb`'s entries, and those of its namespaces `kb` + newline + … (the engine's, one
        per visibility)."""
        with self._lock:
            for key in [k for k in self._entries if k == kb or k.startswith(kb + "\n")]:
                del self._entries[key]

    def _live(self, kb: str, generation: str) -> list[_Entry[V]]:
        gen, entries = self._entries.get(kb, (generation, []))
        if gen != generation:
            entries = []
        now = self._clock()
        if self._ttl:
            entries = [e for e in entries if now - e.stamp <= self._ttl]
        self._entries[kb] = (generation, entries)
        return entries
