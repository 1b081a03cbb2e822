"""The aiohttp service: platform routes (mounted by each adapter) plus /health, /ready and /metrics."""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import structlog
from aiohttp import web
from redis.asyncio import Redis

from bot.connections import ConnectionGuard
from bot.core.ports import JobRunner
from bot.infra.metrics import Metrics, metrics_handler
from rag.engine import Engine
from rag.redact import redact

log = structlog.get_logger(__name__)

ReadyCheck = Callable[[], Awaitable[None]]  # raises when the dependency is not ready


class ChatSide(Protocol):
    """What the service needs of the chat app: its jobs to drain, its Redis, its metrics."""

    runner: JobRunner
    redis: Redis | None
    metrics: Metrics

    async def aclose(self) -> None: ...


ENGINE = web.AppKey("engine", Engine)
WARMING = web.AppKey("warming", asyncio.Task[None])  # the model and keyword indexes, loading
READY_MAX_AGE_S = 0.5  # a readiness answer is reused this long (load balancers probe often)
# Slack events, Teams activities and their button clicks are a few KB: a larger body gets 413.
MAX_REQUEST_BYTES = 1024 * 1024


def build_app(
    *, engine: Engine, chat: ChatSide, check_timeout: float = 2.0, runs_jobs: bool = True
) -> web.Application:
    """The web application. Adapters add their routes with `app.router` before it starts.

    `runs_jobs=False` (RUNNER=queue): workers run the jobs, so this process never loads the model.
    """
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[ENGINE] = engine
    checks: dict[str, ReadyCheck] = {"embedding_model": _model_check(engine)} if runs_jobs else {}
    # Probes get their own threads: under load the default executor is full of jobs' work, and a
    # heartbeat queued behind it would turn /ready 503 exactly when the process is busiest.
    probes = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ready")
    checks["chroma"] = _chroma_check(engine, probes)
    if chat.redis is not None:  # REDIS_URL: dedup, rate limits and thread memory live there
        checks["redis"] = _redis_check(chat)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    readiness = _SharedProbe(lambda: _failures(checks, check_timeout), max_age=READY_MAX_AGE_S)
    chat.metrics.watch_readiness(readiness.get, checks)

    async def ready(_: web.Request) -> web.Response:
        failures = await readiness.get()
        if failures:
            return web.json_response({"status": "unavailable", "failed": failures}, status=503)
        return web.json_response({"status": "ready"})

    async def load_model(_: web.Application) -> None:
        # Model and keyword indexes take seconds (a 100k-chunk knowledge base: tens of seconds):
        # load them in the background so /health answers at once; /ready waits for them.
        app[WARMING] = asyncio.create_task(_warm_until_done(engine))

    async def drain(_: web.Application) -> None:
        await chat.runner.drain()

    async def close_chat(_: web.Application) -> None:
        await chat.aclose()
        probes.shutdown(wait=False)

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_handler(chat.metrics))
    if runs_jobs:
        app.on_startup.append(load_model)
    app.on_shutdown.append(drain)
    app.on_cleanup.append(close_chat)
    return app


async def serve(app: web.Application, *, host: str, port: int, header_timeout: float = 10.0) -> None:
    """Serve until SIGINT/SIGTERM, then stop taking requests, let running jobs finish, and return.

    Our own signal handlers: aiohttp's (`handle_signals=True`) raise GracefulExit, which cancels the
    running jobs instead of draining them and makes the process exit with status 1. A second signal
    during the drain gets the default action (stop at once). Our own listening socket too: its
    connections pass through a ConnectionGuard (a deadline on request heads, no log flood when out
    of file descriptors; see bot/connections.py).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    guard = ConnectionGuard(header_timeout=header_timeout)
    app.middlewares.append(guard.middleware)
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(guard.exception_handler)
    runner = web.AppRunner(app)
    listening: asyncio.Server | None = None
    try:
        await runner.setup()
        assert runner.server is not None  # set up just above
        listening = await loop.create_server(guard.factory(runner.server), host, port, reuse_address=True)
        log.info("serving", host=host, port=port, header_timeout_s=header_timeout)
        await stop.wait()
        log.info("stopping", reason="signal")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if listening is not None:
            listening.close()
        await runner.cleanup()
        loop.set_exception_handler(previous_handler)
        log.info("stopped")


class _SharedProbe:
    """One readiness evaluation at a time, its result reused for `max_age` seconds: however many
    probes arrive at once, /ready costs one round of checks."""

    def __init__(self, run: Callable[[], Awaitable[dict[str, str]]], *, max_age: float) -> None:
        self._run = run
        self._max_age = max_age
        self._running: asyncio.Task[dict[str, str]] | None = None
        self._last: dict[str, str] = {}
        self._at = -math.inf

    async def get(self) -> dict[str, str]:
        if time.monotonic() - self._at < self._max_age:
            return self._last
        if self._running is None:
            self._running = asyncio.create_task(self._evaluate())
        return await asyncio.shield(self._running)

    async def _evaluate(self) -> dict[str, str]:
        try:
            self._last = await self._run()
            self._at = time.monotonic()
            return self._last
        finally:
            self._running = None


async def _failures(checks: dict[str, ReadyCheck], limit_s: float) -> dict[str, str]:
    """Each failing check's reason; each check may take `limit_s`, all of them at once."""

    async def run(check: ReadyCheck) -> str | None:
        try:
            async with asyncio.timeout(limit_s):
                await check()
        except TimeoutError:
            return f"no answer within {limit_s:g} s"
        except Exception as exc:  # any failure means not ready: say which (no URL's password)
            return redact(f"{type(exc).__name__}: {exc}")[:200]
        return None

    names = list(checks)
    results = await asyncio.gather(*(run(checks[n]) for n in names))
    return {n: r for n, r in zip(names, results, strict=True) if r is not None}


async def _warm_until_done(engine: Engine, retry_s: float = 2.0) -> None:
    """Warm the engine, retrying while a dependency (Chroma) is down: /ready says what is missing."""
    while True:
        try:
            await engine.warm()
            return
        except Exception:
            log.warning("warm_up_failed_retrying", exc_info=True)
            await asyncio.sleep(retry_s)


def _model_check(engine: Engine) -> ReadyCheck:
    async def check() -> None:
        if not engine.warmed:
            raise RuntimeError("loading the model and keyword indexes")

    return check


def _redis_check(chat: ChatSide) -> ReadyCheck:
    async def check() -> None:
        assert chat.redis is not None
        await chat.redis.ping()

    return check


def _chroma_check(engine: Engine, probes: ThreadPoolExecutor) -> ReadyCheck:
    async def check() -> None:
        await asyncio.get_running_loop().run_in_executor(probes, engine.ping)

    return check
