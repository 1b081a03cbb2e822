"""The feedback books (in memory, SQLite for one machine, Redis for several) keep the same promises:
one vote per person per answer, a reason kept when the same click comes again, concurrent clicks
never both first, votes listed newest first by knowledge base, and both forgotten after retention."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.core.feedback import (
    AnswerNote,
    FeedbackBook,
    FeedbackRecorder,
    FeedbackVote,
    MemoryFeedbackBook,
    VoteRecord,
)
from bot.infra.feedback_sqlite import SqliteFeedbackBook
from bot.infra.redis_state import RedisFeedbackBook
from tests.redisdb import REDIS_URL, delete_prefix, sync_client, unique_prefix

NOTE = AnswerNote("slack-T1", "How often does the VPN certificate expire?", "llm", ("vpn.md",))


@dataclass
class Books:
    make: Callable[..., FeedbackBook]
    clock: Callable[[], float]
    advance: Callable[[float], Any]  # async: let `seconds` pass


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def books(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Books]:
    if request.param != "redis":
        now = [1_000_000.0]

        async def move(seconds: float) -> None:
            now[0] += seconds

        def clock() -> float:
            return now[0]

        if request.param == "memory":
            yield Books(lambda **kw: MemoryFeedbackBook(clock=clock, **kw), clock, move)
        else:
            yield Books(
                lambda **kw: SqliteFeedbackBook(tmp_path / "f.sqlite3", clock=clock, **kw), clock, move
            )
        return
    sync_client().close()  # a clear message when no Redis answers
    prefix = unique_prefix()
    client = aioredis.Redis.from_url(REDIS_URL)
    import time

    yield Books(lambda **kw: RedisFeedbackBook(client, prefix=prefix, **kw), time.time, asyncio.sleep)
    await client.aclose()
    delete_prefix(prefix)


def vote(books: Books, ref: str, user: str, v: str, **kw: Any) -> VoteRecord:
    return VoteRecord("slack", kw.pop("kb", "slack-T1"), user, ref, v, books.clock(), **kw)  # type: ignore[arg-type]


async def test_a_book_says_what_each_vote_replaces(books: Books) -> None:
    book = books.make()
    assert await book.cast(vote(books, "Ev1", "U1", "down")) is None  # the first: counted
    assert (await book.cast(vote(books, "Ev1", "U1", "down"))).vote == "down"  # type: ignore[union-attr]
    assert (await book.cast(vote(books, "Ev1", "U1", "up"))).vote == "down"  # type: ignore[union-attr]
    assert await book.cast(vote(books, "Ev1", "U2", "up")) is None  # another person
    assert await book.cast(vote(books, "Ev2", "U1", "up")) is None  # another answer


async def test_the_same_vote_again_keeps_the_reason_given_before(books: Books) -> None:
    book = books.make()
    await book.cast(vote(books, "Ev1", "U1", "down"))
    await book.cast(vote(books, "Ev1", "U1", "down", reason="outdated", comment="changed in May"))
    await book.cast(vote(books, "Ev1", "U1", "down"))  # the button clicked again
    (kept,) = await book.votes(since=0)
    assert (kept.vote, kept.reason, kept.comment) == ("down", "outdated", "changed in May")
    await book.cast(vote(books, "Ev1", "U1", "up"))  # a changed mind drops the reason
    (kept,) = await book.votes(since=0)
    assert (kept.vote, kept.reason, kept.comment) == ("up", "", "")


async def test_of_concurrent_clicks_exactly_one_is_the_first(books: Books) -> None:
    book = books.make()
    results = await asyncio.gather(*(book.cast(vote(books, "A1", "U1", "up")) for _ in range(25)))
    assert results.count(None) == 1


async def test_votes_are_listed_newest_first_by_knowledge_base_with_the_answer_noted(books: Books) -> None:
    book = books.make()
    await book.note("slack", ["Ev1", "1700.1"], NOTE)
    assert await book.noted("slack", "1700.1") == NOTE
    assert await book.noted("teams", "Ev1") is None  # another platform's answer
    await book.cast(vote(books, "Ev1", "U1", "down", note=NOTE))
    await books.advance(0.01)
    await book.cast(vote(books, "Ev9", "U2", "up", kb="slack-T2"))
    await books.advance(0.01)
    await book.cast(vote(books, "Ev1", "U3", "up", note=NOTE))

    assert [(v.user, v.kb) for v in await book.votes(since=0)] == [
        ("U3", "slack-T1"),
        ("U2", "slack-T2"),
        ("U1", "slack-T1"),
    ]
    mine = await book.votes(since=0, kb="slack-T1")
    assert [v.user for v in mine] == ["U3", "U1"] and mine[1].note == NOTE
    assert await book.votes(since=books.clock() + 1) == []


async def test_votes_and_notes_are_forgotten_after_their_retention(books: Books) -> None:
    book = books.make(ttl=0.2)
    await book.note("slack", ["Ev1"], NOTE)
    assert await book.cast(vote(books, "Ev1", "U1", "up")) is None
    await books.advance(0.3)
    assert await book.cast(vote(books, "Ev1", "U1", "up")) is None
    await book.note("slack", ["Ev2"], NOTE)  # notes are pruned as new ones come
    assert await book.noted("slack", "Ev1") is None


async def test_the_recorder_counts_a_vote_once_and_keeps_the_reason_that_follows(books: Books) -> None:
    counted: list[tuple[str, str, str]] = []

    class Telemetry:
        def feedback(self, platform: str, kb: str, v: str) -> None:
            counted.append((platform, kb, v))

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    book = books.make()
    recorder = FeedbackRecorder(
        kb_for=lambda ws: f"kb-{ws}", telemetry=Telemetry(), book=book, clock=books.clock
    )  # type: ignore[arg-type]
    await recorder.note("slack", ["Ev1", ""], NOTE)
    click = FeedbackVote("slack", "slack-T1", "U1", "down", "Ev1")
    await recorder.record(click)
    await recorder.record(click)  # a double click
    await recorder.record(FeedbackVote("slack", "slack-T1", "U1", "down", "Ev1", "bogus", "x" * 900))
    await books.advance(0.01)
    await recorder.record(FeedbackVote("slack", "slack-T1", "U2", "up", "Ev-unknown"))

    assert counted == [("slack", "slack-T1", "down"), ("slack", "kb-slack-T1", "up")]
    unknown, known = await book.votes(since=0)
    assert (known.reason, len(known.comment), known.note) == ("", 500, NOTE)  # no such reason: none
    assert (unknown.kb, unknown.note) == ("kb-slack-T1", None)  # an answer not noted: kb from the workspace


async def test_a_reason_is_kept_whatever_characters_the_answer_or_the_comment_hold(books: Books) -> None:
    """Text as a platform's JSON can carry it: a lone surrogate (an escape like \\ud800), NUL, quotes."""
    book = books.make()
    odd = AnswerNote("slack-T1", 'half an emoji \ud83d, NUL \x00, "quoted" \\', "llm", ())
    await book.cast(vote(books, "Ev1", "U1", "down", note=odd))
    await book.cast(vote(books, "Ev1", "U1", "down", reason="wrong", comment="\udc00 no", note=odd))
    await book.cast(vote(books, "Ev1", "U1", "down", note=odd))  # clicked again: the reason stays
    (kept,) = await book.votes(since=0)
    assert (kept.vote, kept.reason) == ("down", "wrong")
    assert kept.comment.endswith(" no") and kept.note is not None
    assert kept.note.question.startswith("half an emoji") and kept.note.documents == ()


async def test_a_vote_kept_by_the_version_before_is_replaced_not_lost() -> None:
    """Until this version a vote was kept as the bare "up" or "down", under the same key, for 90 days."""
    sync_client().close()
    prefix = unique_prefix()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.set(f"{prefix}vote:slack:Ev1:U1", "down", px=60_000)
        book = RedisFeedbackBook(client, prefix=prefix)
        recorder = FeedbackRecorder(book=book)
        await recorder.record(FeedbackVote("slack", "slack-T1", "U1", "down", "Ev1", "outdated", "May"))
        (kept,) = await book.votes(since=0)
        assert (kept.vote, kept.reason, kept.comment) == ("down", "outdated", "May")
        previous = await book.cast(VoteRecord("slack", "slack-T1", "U2", "Ev1", "up", kept.at))
        assert previous is None
        await client.set(f"{prefix}vote:slack:Ev1:U3", "up", px=60_000)
        previous = await book.cast(VoteRecord("slack", "slack-T1", "U3", "Ev1", "down", kept.at))
        assert previous is not None and previous.vote == "up"  # a changed vote, not a first one
    finally:
        await client.aclose()
        delete_prefix(prefix)


def test_old_notes_are_found_for_pruning_by_an_index_not_by_reading_every_note(tmp_path: Path) -> None:
    """Every answer prunes the notes past retention: with 90 days of answers kept, a scan of the whole
    table for each answer (under the write lock that votes wait for) would grow with the traffic."""
    path = tmp_path / "f.sqlite3"
    asyncio.run(SqliteFeedbackBook(path).note("slack", ["Ev1"], NOTE))
    with contextlib.closing(sqlite3.connect(path)) as db:
        plan = db.execute("EXPLAIN QUERY PLAN DELETE FROM notes WHERE at < ?", (0.0,)).fetchall()
    assert "USING INDEX" in " ".join(str(step[-1]) for step in plan), plan
