"""The terminal's outbound part: replies printed to a stream, files read from this machine."""

from __future__ import annotations

from typing import Any, TextIO

from bot.console.files import LocalFileFetcher
from bot.console.sender import ConsoleAddress, ConsoleHandle, ConsoleSender
from bot.console.translate import PLATFORM


class ConsoleOutbound:
    name = PLATFORM
    ask_how = "type a question. `/upload PATH` adds a file, `/quit` leaves"

    def __init__(self, out: TextIO) -> None:
        self.sender = ConsoleSender(out)
        self.fetcher = LocalFileFetcher()

    def read_address(self, data: dict[str, Any]) -> ConsoleAddress:
        return ConsoleAddress.from_dict(data)

    def read_handle(self, data: dict[str, Any]) -> ConsoleHandle | None:
        return ConsoleHandle.from_dict(data)

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""
