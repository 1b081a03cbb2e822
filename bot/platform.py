"""What a chat platform package gives threadwise, and what it is given.

Each platform package served over HTTP (bot/slack, bot/teams) exposes a `Platform` in its
`platform` module; the terminal (bot/console) has the same two parts. Its outbound part
is built first, from Settings alone: the API client, the reply sender and the file fetcher, used
alike by `threadwise serve`, `worker` and `chat`. Its inbound part is built on the outbound part and
an `Intake`: routes that only translate a request into an `Incoming` and hand it to `submit` (and a
👍/👎 to `feedback`). Whether to answer is the dispatcher's decision, not the platform's.

bot/platforms.py lists the packages, each with the setting that enables it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from bot.core import ports
from bot.core.feedback import FeedbackVote
from bot.core.model import Incoming

if TYPE_CHECKING:
    from aiohttp import web

    from bot.settings import Settings


class Outbound(ports.Outbound, Protocol):
    """Replies and files, with no route: all a queue worker needs of a platform."""

    async def start(self) -> None:
        """Open connections, inside the running event loop."""
        ...

    async def close(self) -> None: ...


class Inbound(Protocol):
    """The platform's side of the web service."""

    def mount(self, app: web.Application) -> None:
        """Add the routes and the start/stop hooks to the web app."""
        ...

    async def drain(self) -> None:
        """Until every accepted request has been handed on and every job has replied."""
        ...


@dataclass(frozen=True)
class Intake:
    """Where an inbound part hands what it translated."""

    submit: Callable[[Incoming], Awaitable[object]]  # the dispatcher
    feedback: Callable[[FeedbackVote], Awaitable[None]]
    drain: Callable[[], Awaitable[None]]  # until every submitted job has replied (in this process)


class Failed(Exception):
    """A `threadwise check` line: what failed and what to do about it (printed as is)."""


class Skipped(Exception):
    """A `threadwise check` line: not configured, nothing to try."""


Check = Callable[[], Awaitable[str]]  # the text printed after OK; raises Failed or Skipped

OutboundT = TypeVar("OutboundT", bound=Outbound)


def failure(exc: BaseException) -> str:
    """An exception as a check line shows it: its type, and its message where it has one."""
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


def _no_checks(settings: Settings) -> Sequence[tuple[str, Check]]:
    return ()


@dataclass(frozen=True)
class Platform(Generic[OutboundT]):
    """One chat platform: how to build its two parts, and its lines in `threadwise check`."""

    name: str  # the `Incoming.platform` / `Job.platform` value it handles
    outbound: Callable[[Settings], OutboundT]
    inbound: Callable[[Settings, OutboundT, Intake], Inbound]
    describe: Callable[[Settings], str] | None = None  # how `check` names it when it is enabled
    checks: Callable[[Settings], Sequence[tuple[str, Check]]] = _no_checks

    def label(self, settings: Settings) -> str:
        return self.describe(settings) if self.describe is not None else self.name
