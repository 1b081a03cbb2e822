"""The terminal's outbound part: replies printed to a stream, files read from this machine."""

from __future__ import annotations

from typing import TextIO

from bot.console.files import LocalFileFetcher
from bot.console.sender import ConsoleSender
from bot.console.translate import PLATFORM


class ConsoleOutbound:
    name = PLATFORM

    def __init__(self, out: TextIO) -> None:
        self.sender = ConsoleSender(out)
        self.fetcher = LocalFileFetcher()

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""
