"""What every `threadwise` sub-command module offers: `register(sub)` adds its sub-parser, whose
defaults name the coroutine that runs it (`run(args, settings) -> exit code`) and whether its output
is for a person at a terminal (`terminal`: routine INFO log lines would drown it)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.settings import Settings

if TYPE_CHECKING:
    from rag.engine import Engine

LOCAL_KB = "local"

Run = Callable[[argparse.Namespace, Settings], Awaitable[int]]
SubParsers = argparse._SubParsersAction  # argparse names no public type for it


def add(
    sub: SubParsers, name: str, run: Run, *, help: str, terminal: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help)
    parser.set_defaults(run=run, terminal=terminal)
    return parser


def scope_argument(value: str) -> str:
    """A scope as `--scope` takes it: workspace, channel:ID or private:USER (rag/scopes.py)."""
    from rag.scopes import is_scope

    if not is_scope(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a scope: workspace, channel:ID or private:USER")
    return value


def with_kb(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--kb", default=LOCAL_KB, help="knowledge base id (default: local)")
    return parser


async def open_engine(settings: Settings, *, sweep: bool = False) -> Engine:
    """The engine from the composition root; `sweep`: first remove what an interrupted ingest left in
    the embedded store (the commands that hold it for a while)."""
    from bot.compose import build_engine

    engine = build_engine(settings)
    if sweep:
        await engine.sweep()
    return engine
