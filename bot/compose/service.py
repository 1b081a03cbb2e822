"""`threadwise serve`'s web service from Settings: the enabled platforms' outbound parts first, the chat
app on them, the web app, then each platform's routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.compose.chat import ChatApp, build_chat_app
from bot.infra.metrics import Metrics
from bot.platform import Inbound, Platform
from bot.platform import Outbound as PlatformOutbound
from bot.platforms import enabled_platforms
from bot.server import build_app
from bot.settings import Settings
from rag.engine import Engine


@dataclass
class Service:
    """`threadwise serve`'s web app: the chat app, and each platform's two parts on it."""

    app: web.Application
    chat: ChatApp
    outbound: dict[str, PlatformOutbound]
    inbound: dict[str, Inbound]


def build_service(
    settings: Settings,
    engine: Engine,
    *,
    platforms: Sequence[Platform[Any]] | None = None,
    metrics: Metrics | None = None,
) -> Service:
    """Outbound parts first (the chat app replies through them), then the web app, then the routes.

    `platforms`: those the platform table enables for these settings, unless given.
    """
    chosen = enabled_platforms(settings) if platforms is None else platforms
    outbound = {p.name: p.outbound(settings) for p in chosen}
    chat = build_chat_app(settings, engine, platforms=list(outbound.values()), metrics=metrics)
    app = build_app(
        engine=engine,
        chat=chat,
        check_timeout=settings.health_check_timeout,
        runs_jobs=settings.runner == "inprocess",
    )
    for part in outbound.values():
        app.on_startup.append(_hook(part.start))  # before the routes' own start-up
    if chat.timer is not None:
        app.on_startup.append(_hook(chat.timer.start))
        app.on_cleanup.insert(0, _hook(chat.timer.stop))
    inbound = {p.name: p.inbound(settings, outbound[p.name], chat.intake()) for p in chosen}
    for routes in inbound.values():
        routes.mount(app)
    for part in outbound.values():
        app.on_cleanup.append(_hook(part.close))  # after the routes' own clean-up
    return Service(app, chat, outbound, inbound)


def _hook(step: Callable[[], Awaitable[None]]) -> Callable[[web.Application], Awaitable[None]]:
    async def hook(_: web.Application) -> None:
        await step()

    return hook
