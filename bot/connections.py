"""Slow and half-open clients cannot hold the HTTP service's connections, nor fill its log.

aiohttp reads a request's head with no deadline of its own: a connection that sends half a request
line and then nothing keeps its socket (a file descriptor) for as long as its keep-alive timeout,
an hour by default. Enough of them (slowloris) exhaust the descriptors, and then the accept loop fails
on every try: /health and /ready stop answering and asyncio logs a traceback a second.

`ConnectionGuard` wraps the protocol factory. Each connection is, in turn:
- waiting: opened, or bytes of a next request arrived, and its head is not complete. It must complete
  within `header_timeout` or it is closed; at most `max_waiting` connections wait at once, and a new
  one beyond that closes the one that has waited longest if that one has waited a second or more (a
  real client sends its head at once, so it is a slow one).
- busy: its head arrived (seen by the app middleware) and the request is being handled.
- idle: a keep-alive connection between requests; aiohttp's keep-alive timeout applies.
When accept() fails for want of descriptors, the oldest waiting connections (or, if none, idle
ones) are closed to make room, and the condition is logged once a minute, not on every try.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

ACCEPT_EXHAUSTED = "socket.accept() out of system resource"  # asyncio's message for EMFILE/ENFILE…
LOG_EVERY_S = 60.0
MIN_WAIT_TO_EVICT_S = 1.0  # a real client's head arrives within milliseconds
_WAITING, _BUSY, _IDLE = "waiting", "busy", "idle"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def default_max_waiting() -> int:
    """A quarter of this process's descriptors may wait for a request head: the rest stay free for
    requests being answered, Chroma's files and outgoing connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, min(soft, 1 << 20) // 4)


class ConnectionGuard:
    def __init__(self, *, header_timeout: float, max_waiting: int | None = None) -> None:
        self.header_timeout = header_timeout
        self.max_waiting = max_waiting or default_max_waiting()
        self._waiting: dict[_Guarded, None] = {}  # insertion order: the longest waiting first
        self._idle: dict[_Guarded, None] = {}
        self._by_transport: dict[int, _Guarded] = {}
        self._exhausted = 0  # accept() failures since the last log line
        self._logged_at = -LOG_EVERY_S

    # -- wiring --------------------------------------------------------------------------------
    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(inner(), self)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self._by_transport.get(id(request.transport))
        if conn is not None:
            conn.become(_BUSY)
        try:
            return await handler(request)
        finally:
            if conn is not None and conn.state == _BUSY:
                conn.become(_IDLE)

    def exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's handler: out of descriptors is handled here; anything else as asyncio would."""
        if context.get("message") != ACCEPT_EXHAUSTED:
            loop.default_exception_handler(context)
            return
        freed = self.shed()
        self._exhausted += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            exc = context.get("exception")
            log.warning(
                "out_of_file_descriptors",
                reason=str(exc) if exc else None,
                refused_accepts=self._exhausted,
                closed_connections=freed,
                open_connections=len(self._by_transport),
                next_report_s=LOG_EVERY_S,
            )
            self._exhausted, self._logged_at = 0, now

    # -- bookkeeping (called by the connections) -----------------------------------------------
    def opened(self, conn: _Guarded) -> None:
        self._by_transport[id(conn.transport)] = conn

    def closed(self, conn: _Guarded) -> None:
        self._by_transport.pop(id(conn.transport), None)
        self._waiting.pop(conn, None)
        self._idle.pop(conn, None)

    def moved(self, conn: _Guarded, old: str, new: str) -> None:
        {_WAITING: self._waiting, _IDLE: self._idle}.get(old, {}).pop(conn, None)
        if new == _IDLE:
            self._idle[conn] = None
        elif new == _WAITING:
            self._waiting[conn] = None
            self._evict_overflow()

    def _evict_overflow(self) -> None:
        """Over the cap, close the longest-waiting connections, but only slow ones: a burst of new
        connections whose heads arrived but are not read yet (this loop tick) must not evict each other."""
        now = asyncio.get_running_loop().time()
        slow_after = min(MIN_WAIT_TO_EVICT_S, self.header_timeout / 2)
        while len(self._waiting) > self.max_waiting:
            oldest = next(iter(self._waiting))
            if now - oldest.since < slow_after:
                return  # nothing slow to evict: out of descriptors, shed() makes room
            oldest.drop("too many connections waiting for a request head")

    def shed(self) -> int:
        """Close the older half of the waiting connections, or of the idle ones if none wait."""
        pool = self._waiting or self._idle
        victims = list(pool)[: max(1, len(pool) // 2)] if pool else []
        for conn in victims:
            conn.drop("out of file descriptors")
        return len(victims)

    @property
    def counts(self) -> dict[str, int]:
        return {"waiting": len(self._waiting), "idle": len(self._idle), "open": len(self._by_transport)}


class _Guarded(asyncio.Protocol):
    """aiohttp's RequestHandler with a deadline on each request head."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self.transport: asyncio.BaseTransport | None = None
        self.state = ""
        self.since = 0.0  # loop time it entered its state
        self._timer: asyncio.TimerHandle | None = None

    def become(self, state: str) -> None:
        old, self.state = self.state, state
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        self.since = loop.time()
        if state == _WAITING:
            self._timer = loop.call_later(self._guard.header_timeout, self.drop, "request head too slow")
        self._guard.moved(self, old, state)

    def drop(self, why: str) -> None:
        """Close the connection; it stops counting at once (connection_lost comes a moment later)."""
        self._guard.closed(self)
        if self.transport is not None and not self.transport.is_closing():
            log.debug("connection_dropped", reason=why, state=self.state)
            self.transport.close()

    # -- asyncio.Protocol, passed on -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._guard.opened(self)
        self._inner.connection_made(transport)
        self.become(_WAITING)

    def data_received(self, data: bytes) -> None:
        if self.state == _IDLE and data:  # the first bytes of the next request's head
            self.become(_WAITING)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._guard.closed(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
