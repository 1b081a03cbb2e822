"""How the engine's work in threads is serialised and stopped.

The write gate: many writes at once, or one exclusive holder (a backup snapshot), never both.

The engine's store writes (an ingest's add-chunks-then-activate, a deletion, a drop) pass the gate
`shared()`; a snapshot holds it `exclusive()` while it copies the store's files, so no write is ever
half-done in a copy. It is a thread lock taken by the worker threads that do the writing, around the
writing only: an ingest's parsing and embedding go on during a copy, and a cancelled caller cannot
release it while its thread still writes. A waiting snapshot goes first: writes that arrive after it
wait, so a steady stream of uploads cannot put a backup off for ever.

Name locks: one ingest or deletion of a document at a time. run_to_end / run_stoppable: work in a
worker thread that a cancelled caller waits for, so its locks cover the whole of the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class WriteGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writers = 0
        self._exclusive = False
        self._waiting = 0  # snapshots waiting for the writers to finish

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Never nested: a snapshot waiting between two holds of one thread would wait for ever."""
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._writers += 1
        try:
            yield
        finally:
            with self._cond:
                self._writers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: not self._exclusive and not self._writers)
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


@dataclass
class _NamedLock:
    lock: asyncio.Lock
    users: int = 0  # holders and waiters


class NameLocks:
    """One lock per key (a knowledge base and a document's name) while someone holds or waits for
    it, then forgotten: a lock per name ever tried would let anyone grow the memory by sending names."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, _NamedLock] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def locked(self, key: Hashable) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.lock.locked()

    async def acquire(self, key: Hashable) -> None:
        entry = self._entries.setdefault(key, _NamedLock(asyncio.Lock()))
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:  # cancelled while waiting
            self._leave(key, entry)
            raise

    def release(self, key: Hashable) -> None:
        entry = self._entries[key]
        entry.lock.release()
        self._leave(key, entry)

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    def _leave(self, key: Hashable, entry: _NamedLock) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._entries[key]


class Stopped(Exception):
    """The caller of run_stoppable was cancelled: the work stopped between two steps."""


def check_stop(stop: threading.Event | None) -> None:
    """Raises Stopped when `stop` is set: work run by run_stoppable calls it between its steps."""
    if stop is not None and stop.is_set():
        raise Stopped


async def run_stoppable(work: Callable[[threading.Event], T]) -> T:
    """`work(stop)` in a worker thread. A cancelled caller sets `stop`, which the work checks between
    steps (check_stop), and waits for the thread to end before the cancellation goes on: a deadline
    or a shutdown stops an ingest within a batch, nothing is left half-written, and the caller's
    locks cover it all."""
    stop = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(work, stop))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # Stopped as asked, or the work's own failure: retrieved, not reported
        raise


async def run_to_end(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn` in a worker thread that a cancelled caller still waits for, so whatever it holds (a
    document's lock) covers the whole of the work, not just the part before the cancel."""
    return await run_stoppable(lambda _stop: fn(*args, **kwargs))
