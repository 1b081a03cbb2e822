"""Replies printed to the terminal, streamed as the answer arrives."""

from __future__ import annotations

import re
from typing import Any, TextIO

from bot.core import text
from bot.core.model import Reply, Working

_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def markdown_to_plain(md: str) -> str:
    """Terminal text from our Markdown: drop emphasis marks, keep link targets visible. Inline code
    is shown as it is, without its backticks (a document name like `_draft_.md` keeps its `_`)."""
    pieces = _CODE_SPAN.split(md)  # prose, code, prose, code, …, prose
    return "".join(piece if i % 2 else _prose_to_plain(piece) for i, piece in enumerate(pieces))


def _prose_to_plain(md: str) -> str:
    plain = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 <\2>", md)
    plain = re.sub(r"(?<![\w*])[*_]{1,2}([^*_\n]+)[*_]{1,2}(?![\w*])", r"\1", plain)
    return plain


class ConsoleSender:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    async def begin(self, address: dict[str, Any], working: Working) -> dict[str, Any]:
        self._out.write(markdown_to_plain(text.working(working)) + "\n")
        self._out.flush()
        return {"shown": ""}

    async def update(self, address: dict[str, Any], handle: dict[str, Any], partial: str) -> None:
        # Print only what is new since the last update, so the answer streams onto the screen.
        partial = partial.removesuffix(" ▌")
        if partial.startswith("_Reading"):
            return
        shown = str(handle.get("shown", ""))
        if len(partial) > len(shown) and partial.startswith(shown):
            self._out.write(partial[len(shown) :])
            self._out.flush()
            handle["shown"] = partial

    async def finish(self, address: dict[str, Any], handle: dict[str, Any], reply: Reply) -> None:
        # The streamed text is on screen: print the rest, or the whole reply when it differs from it
        # (citations cleaned up, a fallback answer, an apology).
        shown = str(handle.get("shown", ""))
        if reply.kind == "answer" and reply.text.startswith(shown):
            body = reply.text[len(shown) :]
        else:
            body = ("\n" if shown else "") + reply.text
        sources = text.sources_markdown(reply.citations)
        parts = [body.rstrip()] + ([sources] if sources else [])
        self._out.write(markdown_to_plain("\n\n".join(parts)) + "\n\n")
        self._out.flush()
