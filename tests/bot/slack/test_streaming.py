"""When Slack will not stream an answer, or a stream ends before the answer does, the person still
ends up with exactly one complete answer in the thread: the real Groq SDK against the Groq fake
writing word by word, the real Slack SDK against the fake Slack refusing or expiring streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import text
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, VPN_GUIDE, HarnessFactory, SlackHarness, groq_answerer
from tests.fakes.groq_server import FakeGroq

QUESTION = "How do I rotate the VPN certificate?"
ANSWER = "Open the Keychain app, delete the old certificate, then download the new one from the portal [1]."
SHOWN = ANSWER  # as mrkdwn and as Markdown alike: no markup in it


@pytest.fixture
async def groq() -> AsyncIterator[FakeGroq]:
    async with FakeGroq(token_delay=0.1) as fake:  # about 1.7 s for ANSWER: two updates or more
        yield fake


async def _ask(make_slack: HarnessFactory, groq: FakeGroq, *, broken: str = "") -> SlackHarness:
    """A harness answering with the Groq fake, which writes ANSWER (or breaks off after `broken`)."""
    slack = await make_slack(answerer=groq_answerer(groq))
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    if broken:
        groq.enqueue_broken_stream(broken)
    else:
        groq.enqueue_answer(ANSWER)
    return slack


async def _answer_in_thread(slack: SlackHarness) -> dict[str, object]:
    body = payloads.app_mention(QUESTION)
    await slack.send(body)
    await slack.settle()
    (message,) = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])  # exactly one message
    return message


def _complete(message: dict[str, object]) -> None:
    """The whole answer, its Sources and the feedback buttons, as one message."""
    blocks = message["blocks"]
    assert isinstance(blocks, list)
    assert message["text"] == SHOWN
    assert [b["type"] for b in blocks] == ["section", "section", "context_actions"]
    assert blocks[1]["text"]["text"].startswith("*Sources*")


@pytest.mark.parametrize(
    "error", ["not_allowed", "unknown_method", "missing_scope", "channel_type_not_supported"]
)
async def test_where_slack_refuses_to_stream_the_placeholder_is_edited_into_the_answer(
    make_slack: HarnessFactory, groq: FakeGroq, error: str
) -> None:
    slack = await _ask(make_slack, groq)
    slack.fake.refuse_streaming(error)

    message = await _answer_in_thread(slack)

    _complete(message)
    assert len(slack.fake.calls_to("chat.startStream")) == 1  # refused once: not asked again each second
    *partials, final = slack.updates()
    assert partials and all(u["text"].endswith("▌") for u in partials)  # edited as it was written
    assert final["ts"] == message["ts"] and len(slack.posts()) == 1  # the placeholder became the answer


async def test_a_stream_that_expires_while_the_answer_is_written_is_finished_with_chat_update(
    make_slack: HarnessFactory, groq: FakeGroq
) -> None:
    slack = await _ask(make_slack, groq)
    slack.fake.expire_streams(after=0.5)  # Slack's is about five minutes

    message = await _answer_in_thread(slack)

    _complete(message)
    assert len(slack.fake.calls_to("chat.startStream")) == 1
    appended = slack.fake.calls_to("chat.appendStream")
    assert len(appended) == 1  # refused as not streaming: no stream is appended to again
    assert slack.fake.calls_to("chat.stopStream") == []
    assert slack.updates()[-1]["ts"] == message["ts"]  # the streamed message, repaired in place


async def test_a_stream_that_expires_before_it_is_stopped_is_finished_with_chat_update(
    make_slack: HarnessFactory, groq: FakeGroq
) -> None:
    groq.token_delay = 0.05  # under a second: the only update starts the stream
    slack = await _ask(make_slack, groq)
    slack.fake.expire_streams(after=0.4)

    message = await _answer_in_thread(slack)

    _complete(message)
    (stop,) = slack.fake.calls_to("chat.stopStream")
    (repair,) = slack.updates()
    assert stop.params["ts"] == repair["ts"] == message["ts"]


async def test_an_answer_that_ends_otherwise_than_it_streamed_is_rewritten_whole(
    make_slack: HarnessFactory, groq: FakeGroq
) -> None:
    """The model's stream breaks off: the answer quoted from the documents replaces what was streamed."""
    slack = await _ask(make_slack, groq, broken="Open the Keychain app, delete the old")

    message = await _answer_in_thread(slack)

    assert slack.fake.calls_to("chat.startStream")
    (stop,) = slack.fake.calls_to("chat.stopStream")
    (rewrite,) = slack.updates()
    assert stop.params["ts"] == rewrite["ts"] == message["ts"]
    assert "Keychain" in str(message["text"]) and "delete the old" not in str(message["text"])[:40]
    assert text.SOURCES_TITLE in str(message["blocks"])
