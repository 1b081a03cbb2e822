"""Slash commands, 👍/👎 clicks, and Slack's AI app threads (status, suggested prompts, title)."""

from __future__ import annotations

import time

import structlog

from bot.core import text
from bot.slack import text as slack_text
from tests.bot.scrape import scrape
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, VPN_GUIDE, SlackHarness

QUESTION = "How do I rotate the VPN certificate?"


# -- the slash command ----------------------------------------------------------------------------


async def test_the_slash_command_is_acked_at_once_and_answers_through_its_response_url(
    slack: SlackHarness,
) -> None:
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader=payloads.USER)
    url = slack.fake.response_url()

    started = time.perf_counter()
    response = await slack.send_form(payloads.slash_command("docs", response_url=url))
    acked = time.perf_counter() - started
    await slack.settle()

    assert response.status == 200 and await response.text() == ""  # nothing shown until the answer
    assert acked < 3.0
    (reply,) = slack.fake.responses
    assert reply["response_type"] == "ephemeral"
    assert reply["text"].startswith("*1 document* in the knowledge base:")
    assert slack.posts() == []  # nothing in the channel for everyone


async def test_the_slash_command_without_words_shows_help(slack: SlackHarness) -> None:
    await slack.send_form(payloads.slash_command("", response_url=slack.fake.response_url()))
    await slack.settle()

    (reply,) = slack.fake.responses
    assert reply["text"].startswith("*threadwise* answers questions from your team's documents")


async def test_forget_by_slash_command_is_refused_to_someone_else_and_allowed_to_the_uploader(
    slack: SlackHarness,
) -> None:
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader=payloads.USER)

    await slack.send_form(
        payloads.slash_command("forget vpn.md", response_url=slack.fake.response_url(), user="W999")
    )
    await slack.settle()
    await slack.send_form(payloads.slash_command("forget vpn.md", response_url=slack.fake.response_url()))
    await slack.settle()

    denied, done = slack.fake.responses
    assert denied["text"] == text.FORGET_DENIED.format(name="vpn.md", uploader=payloads.USER)
    assert done["text"].startswith("Deleted *vpn.md*")
    assert await slack.engine.documents(KB) == []


async def test_when_the_response_url_fails_the_reply_is_still_private(slack: SlackHarness) -> None:
    dead = f"{slack.fake.base_url}/gone/T111/1/x"  # 404

    await slack.send_form(payloads.slash_command("stats", response_url=dead))
    await slack.settle()

    (ephemeral,) = slack.fake.ephemeral
    assert ephemeral["user"] == payloads.USER and ephemeral["channel"] == payloads.CHANNEL
    assert ephemeral["text"].startswith(f"*{KB}*: 0 documents")
    assert slack.posts() == []


# -- feedback -------------------------------------------------------------------------------------------


async def test_a_feedback_click_is_acked_recorded_and_thanked(slack: SlackHarness) -> None:
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    question = payloads.app_mention(QUESTION)
    await slack.send(question)
    await slack.settle()
    (answer,) = slack.fake.thread(payloads.CHANNEL, question["event"]["ts"])
    buttons = answer["blocks"][-1]["elements"]
    down = next(b for b in buttons if b["action_id"] == "threadwise_feedback_down")

    with structlog.testing.capture_logs() as logs:
        response = await slack.send_form(
            payloads.block_actions(action_id=down["action_id"], value=down["value"], message=answer)
        )
        await slack.settle()

    assert response.status == 200
    metrics = await scrape(slack.http)
    assert metrics.value("threadwise_feedback_total", platform="slack", kb=KB, vote="down") == 1
    assert metrics.value("threadwise_feedback_total", vote="up") is None
    (logged,) = [e for e in logs if e["event"] == "answer_feedback"]
    assert logged["vote"] == "down" and logged["ref"] == question["event_id"]
    assert logged["user"] == payloads.USER and logged["kb"] == KB
    (thanks,) = slack.fake.ephemeral
    assert thanks["text"] == text.FEEDBACK_THANKS
    assert thanks["user"] == payloads.USER and thanks["thread_ts"] == question["event"]["ts"]


async def test_a_replayed_or_changed_click_never_counts_one_person_twice(slack: SlackHarness) -> None:
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    question = payloads.app_mention(QUESTION)
    await slack.send(question)
    await slack.settle()
    (answer,) = slack.fake.thread(payloads.CHANNEL, question["event"]["ts"])
    buttons = {b["action_id"]: b for b in answer["blocks"][-1]["elements"]}
    up, down = buttons["threadwise_feedback_up"], buttons["threadwise_feedback_down"]

    def click(button: dict[str, str], user: str = payloads.USER) -> str:
        action, value = button["action_id"], button["value"]
        return payloads.block_actions(action_id=action, value=value, message=answer, user=user)

    with structlog.testing.capture_logs() as logs:
        for form in (click(down), click(down), click(down), click(up), click(up, user="W333")):
            assert (await slack.send_form(form)).status == 200  # each one signed anew, as Slack would
            await slack.settle()

    metrics = await scrape(slack.http)
    assert metrics.value("threadwise_feedback_total", platform="slack", kb=KB, vote="down") == 1
    assert metrics.value("threadwise_feedback_total", platform="slack", kb=KB, vote="up") == 1  # W333's
    votes = [(e["user"], e["vote"], e["replaces"]) for e in logs if e["event"] == "answer_feedback"]
    assert votes == [(payloads.USER, "down", None), (payloads.USER, "up", "down"), ("W333", "up", None)]


# -- AI app threads -------------------------------------------------------------------------------------


async def test_a_new_assistant_thread_gets_suggested_prompts(slack: SlackHarness) -> None:
    thread_ts = payloads.new_ts()

    response = await slack.send(payloads.assistant_thread_started(thread_ts=thread_ts))
    await slack.settle()

    assert response.status == 200
    (call,) = slack.fake.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.params["channel_id"] == payloads.DM and call.params["thread_ts"] == thread_ts
    assert [p["message"] for p in call.params["prompts"]] == [m for _, m in slack_text.ASSISTANT_PROMPTS]


async def test_a_question_in_an_assistant_thread_shows_a_status_and_titles_the_thread(
    slack: SlackHarness,
) -> None:
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    thread_ts = payloads.new_ts()
    await slack.send(payloads.assistant_thread_started(thread_ts=thread_ts))
    await slack.settle()

    await slack.send(payloads.dm_message(QUESTION, thread_ts=thread_ts))
    await slack.settle()
    await slack.send(payloads.dm_message("And where is the portal?", thread_ts=thread_ts))
    await slack.settle()

    statuses = slack.fake.calls_to("assistant.threads.setStatus")
    assert [c.params["status"] for c in statuses] == ["is searching your documents…"] * 2
    assert all(c.params["thread_ts"] == thread_ts for c in statuses)
    (title,) = slack.fake.calls_to("assistant.threads.setTitle")  # the first question names the thread
    assert title.params["title"] == QUESTION
    # No placeholder: the status shows the bot is working; each answer is one new message.
    assert slack.updates() == []
    answers = slack.fake.thread(payloads.DM, thread_ts)
    assert len(answers) == 2 and "Keychain" in answers[0]["text"]


async def test_where_slack_refuses_a_status_a_placeholder_is_shown_instead(slack: SlackHarness) -> None:
    slack.fake.fail_next("assistant.threads.setStatus", status=200, error="not_allowed_token_type")
    thread_ts = payloads.new_ts()

    await slack.send(payloads.dm_message(QUESTION, thread_ts=thread_ts))
    await slack.settle()

    (placeholder,) = slack.posts()
    assert placeholder["text"] == text.THINKING
    assert len(slack.updates()) == 1
