"""`threadwise feedback [--kb KB] [--since DAYS]`: the votes on answers, counted per knowledge base,
with the latest reasons people gave and what they were answered.

Votes are read where the running bot keeps them: Redis (REDIS_URL), else FEEDBACK_PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import time
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bot.commands.base import SubParsers, add
from bot.core.feedback import REASONS, FeedbackBook, VoteRecord
from bot.settings import Settings
from rag.errors import UserFacingError

LATEST = 10  # reasons shown
DAY_S = 86400.0


def register(sub: SubParsers) -> None:
    parser = add(sub, "feedback", run, help="votes on answers: counts and the latest reasons", terminal=True)
    parser.add_argument("--kb", default=None, help="only this knowledge base (default: all)")
    parser.add_argument("--since", type=_days, default=30.0, metavar="DAYS", help="the last DAYS days (30)")


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        days = -1.0
    if not 0 < days <= 3650:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days between 0 and 3650")
    return days


async def run(args: argparse.Namespace, settings: Settings) -> int:
    async with _book(settings) as book:
        since = time.time() - args.since * DAY_S
        print(feedback_report(await book.votes(since=since, kb=args.kb), days=args.since, kb=args.kb))
    return 0


@contextlib.asynccontextmanager
async def _book(settings: Settings) -> AsyncIterator[FeedbackBook]:
    from bot.compose.chat import feedback_book

    if not settings.redis_url:
        path = Path(settings.feedback_path)
        if not await asyncio.to_thread(path.is_file):  # a report creates nothing, and says so
            raise UserFacingError(
                f"No votes are kept in {path} (FEEDBACK_PATH): none was cast on this machine yet, or "
                "the bot keeps them elsewhere (its FEEDBACK_PATH, or Redis: REDIS_URL)."
            )
        try:
            yield feedback_book(settings, None)
        except sqlite3.Error as exc:  # damaged, not SQLite, or locked by a writer that does not finish
            raise UserFacingError(f"Cannot read the votes in {path} (FEEDBACK_PATH): {exc}") from None
        return
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    async with aioredis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=5, socket_timeout=10
    ) as client:
        try:
            await client.ping()
        except RedisError as exc:
            raise UserFacingError(
                f"Cannot read the votes from Redis (REDIS_URL): {type(exc).__name__}"
            ) from None
        yield feedback_book(settings, client)


def feedback_report(votes: Sequence[VoteRecord], *, days: float, kb: str | None) -> str:
    where = f"knowledge base {kb}" if kb else "every knowledge base"
    head = f"Votes on answers in the last {days:g} days, {where}:"
    if not votes:
        return f"{head}\nnone."
    return "\n\n".join([head + "\n" + _counts(votes), _reasons(votes), _latest(votes)])


def _counts(votes: Sequence[VoteRecord]) -> str:
    ups = Counter(v.kb for v in votes if v.vote == "up")
    downs = Counter(v.kb for v in votes if v.vote == "down")
    rows = [(kb, str(ups[kb]), str(downs[kb])) for kb in sorted(ups | downs)]
    if len(rows) > 1:
        rows.append(("total", str(sum(ups.values())), str(sum(downs.values()))))
    header = ("knowledge base", "up", "down")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}" for r in [header, *rows]
    )


def _reasons(votes: Sequence[VoteRecord]) -> str:
    downs = [v for v in votes if v.vote == "down"]
    given = Counter(v.reason for v in downs if v.reason)
    parts = [f"{label.lower()} {given[key]}" for key, label in REASONS.items()]
    missing = len(downs) - sum(given.values())
    return f"Why down: {', '.join(parts)}; no reason given {missing}."


def _latest(votes: Sequence[VoteRecord]) -> str:
    explained = [v for v in votes if v.vote == "down" and (v.reason or v.comment)][:LATEST]
    if not explained:
        return "Latest reasons: none given."
    return "Latest reasons:\n" + "\n".join(_line(v) for v in explained)


def _line(vote: VoteRecord) -> str:
    when = datetime.fromtimestamp(vote.at, UTC).strftime("%Y-%m-%d %H:%M")
    said = REASONS.get(vote.reason, "no reason")
    comment = f' — "{_flat(vote.comment)}"' if vote.comment else ""
    line = f"- {when} UTC  {_flat(vote.kb)}  {vote.platform} {_flat(vote.user)}: {said}{comment}"
    note = vote.note
    if note is None:
        return line + "\n  (the answer is not known)"
    cites = f"; cites {_flat(', '.join(note.documents))}" if note.documents else ""
    return f"{line}\n  asked: {_flat(note.question)} ({note.mode} answer{cites})"


def _flat(text: str, limit: int = 200) -> str:
    """One line of what a person typed, cut short, with no control character: an escape sequence in
    a comment must not drive the operator's terminal."""
    printable = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    flat = " ".join(printable.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
