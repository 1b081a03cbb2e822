"""Test doubles of the chat side's ports, shared by the tests of the core."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bot.console.files import LocalFileFetcher
from bot.core.ports import FileFetcher, ReplySender

ASK_HOW = "ask me in this test"


@dataclass(frozen=True)
class Place:
    """An address in a test's own terms."""

    channel: str
    thread_ts: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Place:
        return cls(**data)


@dataclass(frozen=True)
class Shown:
    """A message a test sender showed (its handle)."""

    ts: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shown | None:
        return cls(**data) if data else None


@dataclass
class Outlet:
    """A platform's outbound part as the core sees it, made of a test's own sender and fetcher."""

    name: str
    sender: ReplySender
    fetcher: FileFetcher = field(default_factory=LocalFileFetcher)
    ask_how: str = ASK_HOW

    def read_address(self, data: dict[str, Any]) -> Place:
        return Place.from_dict(data)

    def read_handle(self, data: dict[str, Any]) -> Shown | None:
        return Shown.from_dict(data)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
