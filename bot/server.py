"""The aiohttp service: platform routes (mounted by each adapter) plus /health and /ready."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from bot.compose import ChatApp
from rag.engine import Engine

log = structlog.get_logger(__name__)

ReadyCheck = Callable[[], Awaitable[None]]  # raises when the dependency is not ready
CHAT_APP = web.AppKey("chat_app", ChatApp)
ENGINE = web.AppKey("engine", Engine)


def build_app(*, engine: Engine, chat: ChatApp, check_timeout: float = 2.0) -> web.Application:
    """The web application. Adapters add their routes with `app.router` before it starts."""
    app = web.Application()
    app[CHAT_APP] = chat
    app[ENGINE] = engine
    checks: dict[str, ReadyCheck] = {
        "embedding_model": _model_check(engine),
        "chroma": _chroma_check(engine),
    }

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        failures = await _failures(checks, check_timeout)
        if failures:
            return web.json_response({"status": "unavailable", "failed": failures}, status=503)
        return web.json_response({"status": "ready"})

    async def load_model(_: web.Application) -> None:
        # The model takes seconds to load: do it in the background so /health answers at once.
        app["model_task"] = asyncio.create_task(asyncio.to_thread(engine.embedder.load))

    async def drain(_: web.Application) -> None:
        await chat.runner.drain()

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.on_startup.append(load_model)
    app.on_shutdown.append(drain)
    return app


async def serve(app: web.Application, *, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, then stop taking requests and let running jobs finish."""
    runner = web.AppRunner(app, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("serving", host=host, port=port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def _failures(checks: dict[str, ReadyCheck], timeout: float) -> dict[str, str]:
    async def run(check: ReadyCheck) -> str | None:
        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except Exception as exc:  # any failure means not ready: say which
            return f"{type(exc).__name__}: {exc}"[:200]
        return None

    names = list(checks)
    results = await asyncio.gather(*(run(checks[n]) for n in names))
    return {n: r for n, r in zip(names, results, strict=True) if r is not None}


def _model_check(engine: Engine) -> ReadyCheck:
    async def check() -> None:
        if not engine.embedder.loaded:
            raise RuntimeError("loading")

    return check


def _chroma_check(engine: Engine) -> ReadyCheck:
    async def check() -> None:
        await asyncio.to_thread(engine.ping)

    return check
