"""`threadwise chat`'s terminal from Settings: the console's two parts on a chat app of their own."""

from __future__ import annotations

from typing import TextIO

from bot.compose.chat import build_chat_app
from bot.console.chat import Terminal
from bot.console.outbound import ConsoleOutbound
from bot.settings import Settings
from rag.engine import Engine


def build_terminal(settings: Settings, engine: Engine, *, kb: str, stdin: TextIO, out: TextIO) -> Terminal:
    # The terminal's workspace is `local`: it reads and writes the knowledge base `kb`.
    local = settings.model_copy(update={"kb_aliases": [f"local={kb}"]})
    chat = build_chat_app(local, engine, platforms=[ConsoleOutbound(out)])
    return Terminal(chat.intake(), engine=engine, kb=kb, stdin=stdin, out=out)
