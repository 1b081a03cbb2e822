"""`threadwise docs [--verbose]`: the documents of a knowledge base, printed for the terminal."""

from __future__ import annotations

import argparse

from bot.commands.base import SubParsers, add, open_engine, with_kb
from bot.core.text import documents_list
from bot.settings import Settings
from bot.terminal import markdown_to_plain


def register(sub: SubParsers) -> None:
    parser = with_kb(add(sub, "docs", run, help="list the documents of a knowledge base", terminal=True))
    parser.add_argument(
        "--verbose", action="store_true", help="also show what each document says about itself (its identity)"
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    engine = await open_engine(settings)
    identities = await engine.identities(args.kb) if args.verbose else None
    print(markdown_to_plain(documents_list(await engine.documents(args.kb), identities)))
    return 0
