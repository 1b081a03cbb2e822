"""`threadwise chat`: the console adapter, through the same dispatcher and jobs as Slack and Teams."""

from __future__ import annotations

import asyncio
import getpass
import sys
import uuid
from importlib import resources
from typing import TextIO

from bot.compose import build_chat_app
from bot.console.outbound import ConsoleOutbound
from bot.console.translate import translate_line
from bot.settings import Settings
from rag.engine import Engine

BANNER = """threadwise — ask questions about the documents in knowledge base '{kb}'.
Type a question, or /help, /docs, /upload PATH, /forget NAME, /quit."""


async def seed_welcome_docs(engine: Engine, kb: str) -> int:
    """An empty knowledge base gets the bot's own guide, so a newcomer can ask something at once."""
    if await engine.documents(kb):
        return 0
    count = 0
    for item in sorted(resources.files("bot.welcome").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".md"):
            await engine.ingest(kb, item.name, item.read_bytes(), uploader="threadwise")
            count += 1
    return count


async def run_chat(
    settings: Settings, engine: Engine, *, kb: str, stdin: TextIO | None = None, out: TextIO | None = None
) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    app = build_chat_app(
        settings.model_copy(update={"kb_aliases": [f"local={kb}"]}), engine, platforms=[ConsoleOutbound(out)]
    )
    if kb == "local" and await seed_welcome_docs(engine, kb):
        out.write("(The knowledge base was empty, so I loaded my own user guide. Ask me how I work!)\n")
    out.write(BANNER.format(kb=kb) + "\n\n")
    out.flush()
    user = getpass.getuser()
    session = uuid.uuid4().hex[:8]
    while True:
        out.write("you> ")
        out.flush()
        line = await asyncio.to_thread(stdin.readline)
        if not line or line.strip().lower() in {"/quit", "/exit", "quit", "exit"}:
            break
        if not line.strip():
            continue
        await app.dispatcher.handle(translate_line(line, user=user, session=session))
        await app.runner.drain()
    out.write("bye\n")
    return 0
