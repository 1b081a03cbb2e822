"""State the dispatcher shares across messages: dedup, rate limits and thread memory (in memory;
feedback votes are bot/core/feedback.py's).

The Redis versions (bot/infra/redis_state.py, for several bot processes) implement the same small
interfaces; tests/bot/test_state_contract.py runs the same assertions against both.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rag.types import Turn


class Deduplicator(Protocol):
    async def first_time(self, key: str) -> bool:
        """True exactly once per key (within the retention window)."""
        ...


class RateLimiter(Protocol):
    async def acquire(self, user: str) -> float:
        """0 when `user` may go ahead now, else the seconds to wait."""
        ...


class ThreadMemory(Protocol):
    async def history(self, thread: str) -> list[Turn]: ...

    async def append(self, thread: str, *turns: Turn) -> None: ...

    async def known(self, thread: str) -> bool:
        """Whether the bot has taken part in this thread (so follow-ups need no mention)."""
        ...


class MemoryDeduplicator:
    def __init__(
        self, *, ttl: float = 3600.0, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._ttl = ttl
        self._max = max_keys
        self._clock = clock

    async def first_time(self, key: str) -> bool:
        now = self._clock()
        while self._seen and (
            len(self._seen) > self._max or now - next(iter(self._seen.values())) > self._ttl
        ):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class MemoryRateLimiter:
    """A token bucket per user: `burst` at once, refilled at `per_minute` a minute."""

    def __init__(self, *, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, user: str) -> float:
        async with self._lock:
            now = self._clock()
            bucket = self._buckets.setdefault(user, _Bucket(self._burst, now))
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self._rate


class MemoryThreadMemory:
    """The last turns of each thread, trimmed to a character budget (≈ 4 characters a token)."""

    def __init__(self, *, max_chars: int = 6000, max_threads: int = 10_000) -> None:
        self._threads: OrderedDict[str, list[Turn]] = OrderedDict()
        self._max_chars = max_chars
        self._max_threads = max_threads

    async def history(self, thread: str) -> list[Turn]:
        return list(self._threads.get(thread, []))

    async def known(self, thread: str) -> bool:
        return thread in self._threads

    async def append(self, thread: str, *turns: Turn) -> None:
        if not turns:
            return
        kept = [*self._threads.pop(thread, []), *turns]
        while len(kept) > 1 and sum(len(t.text) for t in kept) > self._max_chars:
            kept.pop(0)
        self._threads[thread] = kept
        while len(self._threads) > self._max_threads:
            self._threads.popitem(last=False)
