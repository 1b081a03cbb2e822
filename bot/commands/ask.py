"""`threadwise ask "QUESTION"`: one answer, with its sources, printed for the terminal."""

from __future__ import annotations

import argparse

from bot.commands.base import SubParsers, add, open_engine, with_kb
from bot.core.text import sources_markdown
from bot.settings import Settings
from bot.terminal import markdown_to_plain
from rag.scopes import EVERYTHING


def register(sub: SubParsers) -> None:
    parser = with_kb(add(sub, "ask", run, help="answer one question", terminal=True))
    parser.add_argument("question")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    engine = await open_engine(settings)
    answer = await engine.ask(args.kb, args.question, visibility=EVERYTHING)  # the operator sees all
    print(markdown_to_plain(answer.text))
    if answer.citations:
        print("\n" + markdown_to_plain(sources_markdown(answer.citations)))
    return 0 if answer.mode != "not_found" else 1
