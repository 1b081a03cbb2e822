"""Votes are kept with what the answer was, and `threadwise feedback` reports them to the operator."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from unittest.mock import patch

import pytest

from bot.cli import main
from bot.compose import build_chat_app
from bot.core.feedback import FeedbackVote, VoteRecord
from bot.core.model import Address, Handle, Incoming, Reply
from bot.infra.feedback_sqlite import SqliteFeedbackBook
from bot.settings import load_settings
from tests.bot.doubles import Outlet, Place
from tests.bot.test_dispatch import VPN_GUIDE, RecordingSender
from tests.conftest import EngineFactory

QUESTION = "How often does the VPN certificate expire?"


class NamingSender(RecordingSender):
    """A platform whose votes name the answer's own message id (as Teams does), not the question's."""

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> str | None:
        await super().finish(address, handle, reply)
        return f"msg-{reply.ref}"


def _question(event_id: str, user: str = "U1") -> Incoming:
    return Incoming("slack", "slack-T1", user, QUESTION, event_id, False, f"t-{event_id}", Place("C1"))


async def test_a_vote_is_kept_with_the_answer_and_reported_with_its_reason(
    make_engine: EngineFactory,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "votes" / "feedback.sqlite3"
    clean_env.setenv("FEEDBACK_PATH", str(path))
    engine = make_engine()
    await engine.ingest("slack-T1", "vpn.md", VPN_GUIDE)
    sender = NamingSender()
    chat = build_chat_app(load_settings(), engine, platforms=[Outlet("slack", sender)])
    for event in ("Ev1", "Ev2"):
        await chat.dispatcher.handle(_question(event))
    await chat.runner.drain()
    intake = chat.intake()

    await intake.feedback(FeedbackVote("slack", "slack-T1", "U7", "down", "Ev1"))
    await intake.feedback(
        FeedbackVote("slack", "slack-T1", "U7", "down", "Ev1", "outdated", "It is 45 days\x1b[2J now")
    )
    await intake.feedback(FeedbackVote("slack", "slack-T1", "U8", "up", "msg-Ev2"))  # by its message id
    await intake.feedback(FeedbackVote("slack", "slack-T1", "U9", "down", "Ev-never-answered"))
    capsys.readouterr()

    assert await asyncio.to_thread(main, ["feedback", "--since", "1"]) == 0  # reads the file anew
    out = capsys.readouterr().out

    assert "knowledge base  up  down\nslack-T1         1     2" in out
    assert "Why down: wrong 0, out of date 1, not in the documents 0, other 0; no reason given 1." in out
    assert 'slack U7: Out of date — "It is 45 days [2J now"' in out  # no escape reaches the terminal
    assert f"asked: {QUESTION} (extractive answer; cites vpn.md)" in out
    assert "\x1b" not in out

    assert await asyncio.to_thread(main, ["feedback", "--kb", "slack-T2"]) == 0
    assert capsys.readouterr().out.endswith("knowledge base slack-T2:\nnone.\n")
    with pytest.raises(SystemExit) as exit:
        await asyncio.to_thread(main, ["feedback", "--since", "-3"])
    assert exit.value.code == 2 and "not a number of days" in capsys.readouterr().err


def test_a_votes_file_that_is_missing_damaged_or_locked_is_one_clear_line(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "elsewhere" / "feedback.sqlite3"
    clean_env.setenv("FEEDBACK_PATH", str(path))

    assert main(["feedback"]) == 1  # run from another folder, or with another FEEDBACK_PATH than the bot's
    err = capsys.readouterr().err
    assert err.startswith("threadwise: ") and err.count("\n") == 1
    assert f"No votes are kept in {path} (FEEDBACK_PATH)" in err
    assert not path.parent.exists()  # a report creates nothing

    path.parent.mkdir()
    path.write_bytes(b"not a database at all" * 100)
    assert main(["feedback"]) == 1
    err = capsys.readouterr().err
    assert err == f"threadwise: Cannot read the votes in {path} (FEEDBACK_PATH): file is not a database\n"

    path.unlink()
    SqliteFeedbackBook(path)._cast(VoteRecord("slack", "slack-T1", "U1", "Ev1", "up", time.time()))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN EXCLUSIVE")  # another process in the middle of writing, for good
        with patch("bot.infra.feedback_sqlite.BUSY_TIMEOUT_S", 0.1):
            assert main(["feedback"]) == 1
    err = capsys.readouterr().err
    assert err == f"threadwise: Cannot read the votes in {path} (FEEDBACK_PATH): database is locked\n"
