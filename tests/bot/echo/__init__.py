"""Echo: a chat platform that exists only in the tests, to show what adding a platform takes.

Inbound, POST /echo/messages takes {"id", "user", "text", "thread", "to_bot"} as JSON; outbound, every
reply is kept in `EchoOutbound.shown`, in order. Nothing else in threadwise knows it: a test adds
`Row("tests.bot.echo", …)` to the platform table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.console.files import LocalFileFetcher
from bot.core.model import Incoming, Reply, Working
from bot.platform import Intake, Platform
from bot.settings import Settings

ROUTE = "/echo/messages"


@dataclass
class EchoSender:
    shown: list[tuple[str, Any]] = field(default_factory=list)  # ("begin" | "update" | "finish", what)

    async def begin(self, address: dict[str, Any], working: Working) -> dict[str, Any]:
        self.shown.append(("begin", working))
        return {"message": len(self.shown)}

    async def update(self, address: dict[str, Any], handle: dict[str, Any], text: str) -> None:
        self.shown.append(("update", text))

    async def finish(self, address: dict[str, Any], handle: dict[str, Any], reply: Reply) -> None:
        self.shown.append(("finish", reply))


class EchoOutbound:
    name = "echo"

    def __init__(self, settings: Settings) -> None:
        self.sender = EchoSender()
        self.fetcher = LocalFileFetcher()
        self.shown = self.sender.shown

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class EchoRoutes:
    def __init__(self, settings: Settings, outbound: EchoOutbound, intake: Intake) -> None:
        self._intake = intake

    def mount(self, app: web.Application) -> None:
        app.router.add_post(ROUTE, self._message)

    async def drain(self) -> None:
        await self._intake.drain()

    async def _message(self, request: web.Request) -> web.Response:
        body = await request.json()
        thread = str(body.get("thread") or body["id"])
        incoming = Incoming(
            platform="echo",
            workspace="echo-lab",
            user=str(body["user"]),
            text=str(body["text"]),
            event_id=str(body["id"]),
            is_direct=False,
            thread=f"echo:{thread}",
            address={"thread": thread},
            addressed=bool(body.get("to_bot", True)),
            in_thread=thread != body["id"],
        )
        await self._intake.submit(incoming)
        return web.Response(status=202)


PLATFORM = Platform(name="echo", outbound=EchoOutbound, inbound=EchoRoutes)
