"""`threadwise chat`: talk to the bot in this terminal, through the same dispatcher and jobs as Slack
and Teams."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from bot.commands.base import SubParsers, add, open_engine, with_kb
from bot.settings import Settings
from rag.engine import Engine


def register(sub: SubParsers) -> None:
    with_kb(add(sub, "chat", run, help="talk to the bot in this terminal", terminal=True))


async def run(args: argparse.Namespace, settings: Settings) -> int:
    return await run_chat(settings, await open_engine(settings, sweep=True), kb=args.kb)


async def run_chat(
    settings: Settings, engine: Engine, *, kb: str, stdin: TextIO | None = None, out: TextIO | None = None
) -> int:
    from bot.compose import build_terminal

    terminal = build_terminal(settings, engine, kb=kb, stdin=stdin or sys.stdin, out=out or sys.stdout)
    return await terminal.run()
