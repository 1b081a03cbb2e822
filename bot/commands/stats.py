"""`threadwise stats [--kb KB]`: documents and passages per knowledge base, as a table.

These are the figures of /metrics that live in the store. The others (requests, stage latencies, cache
hit ratios, queue depth, rate-limit hits, feedback) are counted inside each running process since it
started, so a fresh command has none to show: they are read at GET /metrics of `threadwise serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, TextIO

from bot.commands.base import SubParsers, add, open_engine
from bot.settings import Settings
from rag.types import KbStats

if TYPE_CHECKING:
    from bot.infra.metrics import QueueDepth
    from rag.engine import Engine

PROCESS_NOTE = (
    "Requests, stage latencies, cache hit ratios, queue depth, rate-limit hits and feedback are counted "
    "by each running process: read them at GET /metrics of `threadwise serve` (and of each worker)."
)


def register(sub: SubParsers) -> None:
    parser = add(sub, "stats", run, help="documents and passages per knowledge base", terminal=True)
    parser.add_argument("--kb", default=None, help="only this knowledge base (default: all)")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.compose import queue_depth

    engine = await open_engine(settings)
    async with queue_depth(settings) as depth:
        return await run_stats(engine, kb=args.kb, out=sys.stdout, queue_depth=depth)


async def run_stats(
    engine: Engine, *, kb: str | None, out: TextIO, queue_depth: QueueDepth | None = None
) -> int:
    """`queue_depth`: the shared job queue (RUNNER=queue), which any process can read."""
    sizes = await asyncio.to_thread(engine.sizes)
    if kb is not None:
        sizes = {kb: sizes.get(kb, KbStats(kb=kb, documents=0, chunks=0))}
    print(stats_table(sizes), file=out)
    if queue_depth is not None:
        depth = await queue_depth()
        print("\njob queue: " + ", ".join(f"{n} {state}" for state, n in depth.items()), file=out)
    print(f"\n{PROCESS_NOTE}", file=out)
    return 0


def stats_table(sizes: dict[str, KbStats]) -> str:
    rows = [(kb, str(s.documents), str(s.chunks)) for kb, s in sorted(sizes.items())]
    if len(rows) != 1:
        total = sum(s.documents for s in sizes.values()), sum(s.chunks for s in sizes.values())
        rows.append(("total", str(total[0]), str(total[1])))
    header = ("knowledge base", "documents", "passages")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]

    def line(row: tuple[str, str, str]) -> str:
        return f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}"

    return "\n".join([line(header), *(line(r) for r in rows)])
