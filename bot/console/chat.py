"""The terminal's inbound part: lines typed at the prompt go to the same dispatcher and jobs as Slack's
and Teams' messages."""

from __future__ import annotations

import asyncio
import getpass
import uuid
from importlib import resources
from typing import TextIO

from bot.console.translate import translate_line
from bot.platform import Intake
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


class Terminal:
    """`threadwise chat`: a conversation at the prompt until /quit or the end of input."""

    def __init__(self, intake: Intake, *, engine: Engine, kb: str, stdin: TextIO, out: TextIO) -> None:
        self._intake = intake
        self._engine = engine
        self._kb = kb
        self._stdin = stdin
        self._out = out

    async def run(self) -> int:
        out = self._out
        if self._kb == "local" and await seed_welcome_docs(self._engine, self._kb):
            out.write("(The knowledge base was empty, so I loaded my own user guide. Ask me how I work!)\n")
        out.write(BANNER.format(kb=self._kb) + "\n\n")
        out.flush()
        user = getpass.getuser()
        session = uuid.uuid4().hex[:8]
        while True:
            out.write("you> ")
            out.flush()
            line = await asyncio.to_thread(self._stdin.readline)
            if not line or line.strip().lower() in {"/quit", "/exit", "quit", "exit"}:
                break
            if not line.strip():
                continue
            await self._intake.submit(translate_line(line, user=user, session=session))
            await self._intake.drain()
        out.write("bye\n")
        return 0
