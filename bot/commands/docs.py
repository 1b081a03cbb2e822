"""`threadwise docs [--scope SCOPE] [--verbose]`: the documents of a knowledge base, printed for the
terminal: every one of them (the operator sees all), each with who may see it, or those of one scope."""

from __future__ import annotations

import argparse

from bot.commands.base import SubParsers, add, open_engine, scope_argument, with_kb
from bot.core.text import documents_list
from bot.settings import Settings
from bot.terminal import markdown_to_plain


def register(sub: SubParsers) -> None:
    parser = with_kb(add(sub, "docs", run, help="list the documents of a knowledge base", terminal=True))
    parser.add_argument(
        "--verbose", action="store_true", help="also show what each document says about itself (its identity)"
    )
    parser.add_argument(
        "--scope", type=scope_argument, default=None, help="only the documents of this scope (default: all)"
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    engine = await open_engine(settings)
    identities = await engine.identities(args.kb) if args.verbose else None
    docs = await engine.documents(args.kb)
    if args.scope is not None:
        docs = [d for d in docs if d.scope == args.scope]
    print(markdown_to_plain(documents_list(docs, identities)))
    return 0
