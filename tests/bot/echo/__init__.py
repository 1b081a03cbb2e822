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
from bot.core.model import Address, Handle, Incoming, Reply, Update, Working
from bot.platform import Intake, Platform
from bot.settings import Settings

ROUTE = "/echo/messages"


@dataclass(frozen=True)
class EchoAddress:
    thread: str

    def to_dict(self) -> dict[str, Any]:
        return {"thread": self.thread}


@dataclass(frozen=True)
class EchoHandle:
    message: int

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message}


@dataclass
class EchoSender:
    shown: list[tuple[str, Any]] = field(default_factory=list)  # ("begin" | "update" | "finish", what)

    async def begin(self, address: Address, working: Working) -> EchoHandle:
        self.shown.append(("begin", working))
        return EchoHandle(len(self.shown))

    async def update(self, address: Address, handle: Handle | None, update: Update) -> Handle | None:
        self.shown.append(("update", update))
        return handle

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> None:
        self.shown.append(("finish", reply))


class EchoOutbound:
    name = "echo"
    ask_how = "post to /echo/messages"

    def __init__(self, settings: Settings) -> None:
        self.sender = EchoSender()
        self.fetcher = LocalFileFetcher()
        self.shown = self.sender.shown

    def read_address(self, data: dict[str, Any]) -> EchoAddress:
        return EchoAddress(str(data["thread"]))

    def read_handle(self, data: dict[str, Any]) -> EchoHandle | None:
        return EchoHandle(int(data["message"])) if data else None

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
            address=EchoAddress(thread),
            addressed=bool(body.get("to_bot", True)),
            in_thread=thread != body["id"],
        )
        await self._intake.submit(incoming)
        return web.Response(status=202)


PLATFORM = Platform(name="echo", outbound=EchoOutbound, inbound=EchoRoutes)
