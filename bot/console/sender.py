"""Replies printed to the terminal, streamed as the answer arrives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from bot.core import text
from bot.core.model import Address, Handle, PartialAnswer, Reply, Update, Working
from bot.terminal import markdown_to_plain


@dataclass(frozen=True)
class ConsoleAddress:
    """The terminal session a reply is printed in."""

    session: str

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsoleAddress:
        return cls(str(data["session"]))


@dataclass(frozen=True)
class ConsoleHandle:
    """The part of the answer already printed, while it streams in."""

    shown: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"shown": self.shown}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsoleHandle | None:
        return cls(str(data.get("shown", ""))) if data else None


class ConsoleSender:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    async def begin(self, address: Address, working: Working) -> ConsoleHandle:
        self._out.write(markdown_to_plain(text.working(working)) + "\n")
        self._out.flush()
        return ConsoleHandle()

    async def update(self, address: Address, handle: Handle | None, update: Update) -> Handle | None:
        # An answer streams onto the screen: only what is new since the last update is printed. An
        # ingest's progress is not shown (the terminal cannot replace a line it printed).
        if not isinstance(update, PartialAnswer):
            return handle
        shown = _shown(handle)
        if len(update.text) > len(shown) and update.text.startswith(shown):
            self._out.write(update.text[len(shown) :])
            self._out.flush()
            return ConsoleHandle(update.text)
        return handle

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> None:
        # The streamed text is on screen: print the rest, or the whole reply when it differs from it
        # (citations cleaned up, a fallback answer, an apology).
        shown = _shown(handle)
        if reply.kind == "answer" and reply.text.startswith(shown):
            body = reply.text[len(shown) :]
        else:
            body = ("\n" if shown else "") + reply.text
        sources = text.sources_markdown(reply.citations)
        parts = [body.rstrip()] + ([sources] if sources else [])
        self._out.write(markdown_to_plain("\n\n".join(parts)) + "\n\n")
        self._out.flush()


def _shown(handle: Handle | None) -> str:
    return handle.shown if isinstance(handle, ConsoleHandle) else ""
