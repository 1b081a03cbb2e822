"""The write gate: many writes at once, or one exclusive holder (a backup snapshot), never both.

The engine's store writes (an ingest's add-chunks-then-activate, a deletion, a drop) pass the gate
`shared()`; a snapshot holds it `exclusive()` while it copies the store's files, so no write is ever
half-done in a copy. It is a thread lock taken by the worker threads that do the writing, around the
writing only: an ingest's parsing and embedding go on during a copy, and a cancelled caller cannot
release it while its thread still writes. A waiting snapshot goes first: writes that arrive after it
wait, so a steady stream of uploads cannot put a backup off for ever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


async def run_to_end(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn` in a worker thread. A cancelled caller still waits for the thread to finish, so whatever
    it holds (a document's lock) covers the whole of the work, not just the part before the cancel."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                continue
        raise
