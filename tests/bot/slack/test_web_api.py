"""How replies reach Slack: 429s waited out, answers streamed into the placeholder, long answers split,
Markdown turned into mrkdwn — with the real Groq SDK against the local Groq fake."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bot.core import text
from bot.slack import text as slack_text
from bot.slack.mrkdwn import SECTION_LIMIT
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, VPN_GUIDE, HarnessFactory, SlackHarness, groq_answerer
from tests.fakes.groq_server import FakeGroq

QUESTION = "How do I rotate the VPN certificate?"


@pytest.fixture
async def groq() -> AsyncIterator[FakeGroq]:
    async with FakeGroq() as fake:
        yield fake


async def test_a_429_from_the_web_api_is_waited_out_as_retry_after_says_and_never_delays_the_ack(
    slack: SlackHarness,
) -> None:
    slack.fake.fail_next("chat.postMessage", status=429, retry_after=1)
    body = payloads.app_mention(QUESTION)

    started = time.perf_counter()
    response = await slack.send(body)
    acked = time.perf_counter() - started
    await slack.settle()

    assert response.status == 200 and acked < 1.0  # the ack does not wait for the Web API
    limited, accepted = slack.fake.calls_to("chat.postMessage")
    assert accepted.at - limited.at >= 1.0
    assert accepted.params["thread_ts"] == body["event"]["ts"]
    assert len(slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])) == 1  # and the answer replaced it


async def test_an_answer_streams_in_its_thread_and_ends_as_one_message_with_sources_and_buttons(
    make_slack: HarnessFactory, groq: FakeGroq
) -> None:
    slack = await make_slack(answerer=groq_answerer(groq))
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE, url="https://fake.slack.com/files/W222/F1/vpn.md")
    answer = (
        "## Steps\n\n- Open the **Keychain** app [1]\n- See [the portal](https://it.example.com/?a=1&b=2)"
    )
    groq.enqueue_answer(answer)
    body = payloads.app_mention(QUESTION)

    await slack.send(body)
    await slack.settle()

    (placeholder,) = slack.posts()
    assert placeholder["text"] == text.THINKING
    (start,) = slack.fake.calls_to("chat.startStream")
    assert start.params["channel"] == payloads.CHANNEL and start.params["thread_ts"] == body["event"]["ts"]
    assert (start.params["recipient_team_id"], start.params["recipient_user_id"]) == (
        payloads.TEAM,
        payloads.USER,
    )
    (deleted,) = slack.fake.calls_to("chat.delete")  # the placeholder goes once the answer shows
    assert deleted.params["ts"] != start.params.get("ts")
    (stop,) = slack.fake.calls_to("chat.stopStream")
    assert slack.updates() == []  # nothing edited: the stream carried it all
    (message,) = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])
    assert message["ts"] == stop.params["ts"] and message["streaming"] is False
    # Markdown, which Slack renders itself; the link shows where it leads.
    assert message["text"] == (
        "## Steps\n\n- Open the **Keychain** app [1]\n- See the portal (<https://it.example.com/?a=1&b=2>)"
    )
    sources, buttons = message["blocks"]
    assert sources["text"]["text"].startswith("*Sources*\n[1] <https://fake.slack.com/files/")
    assert buttons["type"] == "context_actions" and buttons["elements"][0]["type"] == "feedback_buttons"


async def test_a_long_answer_is_split_into_messages_under_slacks_limits(
    make_slack: HarnessFactory, groq: FakeGroq
) -> None:
    slack = await make_slack(answerer=groq_answerer(groq))
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    slack.fake.refuse_streaming()  # edited in place, as where Slack does not stream
    paragraph = "Open the Keychain app and delete the old certificate before you install the new one [1]. "
    groq.enqueue_answer("\n\n".join(paragraph * 3 for _ in range(25)))  # about 6,800 characters
    body = payloads.app_mention(QUESTION)

    await slack.send(body)
    await slack.settle()

    messages = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])
    assert len(messages) >= 3
    assert all(len(m["text"]) <= SECTION_LIMIT for m in messages)
    assert all(len(b["text"]["text"]) <= SECTION_LIMIT for m in messages for b in m["blocks"] if "text" in b)
    first, *middle, last = messages
    assert first["edits"] >= 1  # the placeholder became the first part
    assert all(not m["blocks"] for m in [first, *middle])
    assert [b["type"] for b in last["blocks"]] == [
        "section",
        "section",
        "context_actions",
    ]  # text, Sources, 👍/👎
    assert "".join(m["text"] for m in messages).count("[1].") == 75


async def test_when_the_placeholder_cannot_be_edited_the_answer_is_posted_anew(slack: SlackHarness) -> None:
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    slack.fake.fail_next("chat.update", status=200, error="message_not_found")  # someone deleted it
    body = payloads.app_mention(QUESTION)

    await slack.send(body)
    await slack.settle()

    placeholder, answer = slack.posts()
    assert placeholder["text"] == text.THINKING
    assert "Keychain" in answer["text"] and answer["thread_ts"] == body["event"]["ts"]


async def test_rate_limited_users_get_a_private_wait_message(make_slack: HarnessFactory) -> None:
    slack = await make_slack(rate_limit_requests_per_minute=1, rate_limit_burst=1)
    first, second = payloads.app_mention(QUESTION), payloads.app_mention("And the portal?")

    await slack.send(first)
    await slack.settle()
    await slack.send(second)
    await slack.settle()

    assert len(slack.posts()) == 1
    (ephemeral,) = slack.fake.ephemeral
    assert ephemeral["user"] == payloads.USER and ephemeral["thread_ts"] == second["event"]["ts"]
    assert ephemeral["text"].startswith("You're sending questions faster than I can keep up.")


async def test_in_an_assistant_thread_the_status_shows_then_the_answer_streams_without_a_placeholder(
    make_slack: HarnessFactory, groq: FakeGroq
) -> None:
    slack = await make_slack(answerer=groq_answerer(groq))
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    groq.enqueue_answer("Open the **Keychain** app and delete the old certificate [1].")
    thread_ts = payloads.new_ts()

    await slack.send(payloads.dm_message(QUESTION, thread_ts=thread_ts))
    await slack.settle()

    (status,) = slack.fake.calls_to("assistant.threads.setStatus")
    assert status.params["loading_messages"] == list(slack_text.LOADING)
    assert slack.posts() == [] and slack.fake.calls_to("chat.delete") == []  # no placeholder to remove
    (start,) = slack.fake.calls_to("chat.startStream")
    assert (start.params["channel"], start.params["thread_ts"]) == (payloads.DM, thread_ts)
    assert (start.params["recipient_team_id"], start.params["recipient_user_id"]) == (
        payloads.TEAM,
        payloads.USER,
    )
    (message,) = slack.fake.thread(payloads.DM, thread_ts)
    assert message["text"] == "Open the **Keychain** app and delete the old certificate [1]."
    assert message["blocks"][-1]["type"] == "context_actions"
