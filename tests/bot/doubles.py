"""Test doubles of the chat side's ports, shared by the tests of the core."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.console.files import LocalFileFetcher
from bot.core.ports import FileFetcher, ReplySender


@dataclass
class Outlet:
    """A platform's outbound part as the core sees it, made of a test's own sender and fetcher."""

    name: str
    sender: ReplySender
    fetcher: FileFetcher = field(default_factory=LocalFileFetcher)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
