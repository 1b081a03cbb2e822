"""The Teams sender's stream near Teams' limits, driven directly (real botbuilder, the fake connector):
the two-minute cap, updates faster than Teams takes them, and handles that cross a queue."""

from __future__ import annotations

import json

from bot.core.model import PartialAnswer, Reply, Working
from bot.teams.address import TeamsHandle
from bot.teams.outbound import TeamsOutbound
from bot.teams.sender import STREAM_LIMIT_S, TeamsSender
from bot.teams.translate import address_of
from rag.types import Citation
from tests.bot.teams.activities import personal_message
from tests.fakes.bot_connector import FakeBotConnector

ANSWER = Reply("Delete the old certificate [1].", kind="answer", citations=(Citation(1, "vpn.md", "p. 1"),))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_answer_still_streaming_near_the_two_minute_limit_ends_the_stream_and_replaces_it(
    fake: FakeBotConnector,
) -> None:
    clock = Clock()
    sender = TeamsSender(TeamsOutbound(app_id=None, app_password=None).adapter, app_id=None, clock=clock)
    where = address_of(personal_message("q", service_url=fake.service_url))

    handle = await sender.begin(where, Working("ask"))
    clock.now += 1
    handle = await sender.update(where, handle, PartialAnswer("Delete"))
    clock.now += STREAM_LIMIT_S
    handle = await sender.update(where, handle, PartialAnswer("Delete the old"))
    clock.now += 1
    after = await sender.update(where, handle, PartialAnswer("Delete the old certificate"))
    answer_id = await sender.finish(where, after, ANSWER)

    informative, chunk, closing, edit = fake.calls
    stream_id = informative.response_id
    assert chunk.stream is not None and chunk.stream["streamSequence"] == 2
    assert (closing.type, closing.text) == ("message", "Delete the old")  # the stream ends in time
    assert closing.stream == {"type": "streaminfo", "streamId": stream_id, "streamType": "final"}
    assert after == handle and handle is not None and handle.state == "closed"
    assert (edit.method, edit.activity_id, edit.text) == ("PUT", stream_id, ANSWER.text)
    assert edit.body["entities"][0]["citation"][0]["position"] == 1
    assert answer_id == stream_id  # what Teams' feedback invokes will name


async def test_updates_faster_than_teams_takes_them_are_skipped(fake: FakeBotConnector) -> None:
    clock = Clock()
    sender = TeamsSender(TeamsOutbound(app_id=None, app_password=None).adapter, app_id=None, clock=clock)
    where = address_of(personal_message("q", service_url=fake.service_url))
    fake.stream_gap = 0  # this test's clock is its own: the sender alone paces

    handle = await sender.begin(where, Working("ask"))
    handle = await sender.update(where, handle, PartialAnswer("One"))  # at once: the first text
    for n in range(3):
        clock.now += 0.3
        handle = await sender.update(where, handle, PartialAnswer(f"One {n}"))
    clock.now += 0.3
    handle = await sender.update(where, handle, PartialAnswer("One two"))

    assert [c.text for c in fake.calls] == ["Searching your documents…", "One", "One two"]
    assert all(c.accepted for c in fake.calls)
    assert handle is not None and handle.sequence == 3


def test_a_stream_handle_survives_the_queue() -> None:
    handle = TeamsHandle(stream_id="1767765488332", sequence=4, started=1.5, sent=9.25, state="closed")
    outbound = TeamsOutbound(app_id=None, app_password=None)

    assert outbound.read_handle(json.loads(json.dumps(handle.to_dict()))) == handle
    assert outbound.read_handle(TeamsHandle(activity_id="17").to_dict()) == TeamsHandle(activity_id="17")
    assert outbound.read_handle(TeamsHandle(state="refused").to_dict()) == TeamsHandle(state="refused")
    assert outbound.read_handle({}) is None
