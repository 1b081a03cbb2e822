"""What `threadwise serve` needs from each chat platform it runs (Slack, Teams)."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from bot.compose import ChatApp
from bot.core.ports import FileFetcher, ReplySender


class Platform(Protocol):
    name: str  # the `Incoming.platform` / `Job.platform` value it handles
    sender: ReplySender
    fetcher: FileFetcher

    def mount(self, app: web.Application, chat: ChatApp) -> None:
        """Add the platform's routes and start/stop hooks to the web app; messages go to `chat`."""
        ...
