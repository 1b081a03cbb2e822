"""Slash commands, 👍/👎 clicks, and Slack's AI app threads (status, suggested prompts, title)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import structlog

from bot.core import text
from bot.core.feedback import COMMENT_LIMIT, REASONS
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


async def _answered(slack: SlackHarness) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A question answered in a channel: the answer, its feedback_buttons element, and its ref."""
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    question = payloads.app_mention(QUESTION)
    await slack.send(question)
    await slack.settle()
    (answer,) = slack.fake.thread(payloads.CHANNEL, question["event"]["ts"])
    (buttons,) = answer["blocks"][-1]["elements"]
    return answer, buttons, question["event_id"]


async def test_a_thumbs_up_is_recorded_once_however_often_it_is_clicked_and_thanked(
    slack: SlackHarness,
) -> None:
    answer, buttons, ref = await _answered(slack)
    up = buttons["positive_button"]["value"]

    with structlog.testing.capture_logs() as logs:
        for _ in range(2):  # a double click: each one signed anew, as Slack would
            response = await slack.send_form(payloads.feedback_click(value=up, message=answer))
            assert response.status == 200
            await slack.settle()

    metrics = await scrape(slack.http)
    assert metrics.value("threadwise_feedback_total", platform="slack", kb=KB, vote="up") == 1
    (logged,) = [e for e in logs if e["event"] == "answer_feedback"]
    assert logged["vote"] == "up" and logged["ref"] == ref and logged["user"] == payloads.USER
    assert [(v.vote, v.ref, v.workspace) for v in slack.votes] == [("up", ref, KB)] * 2
    assert slack.fake.views == []  # no form for a 👍
    assert {e["text"] for e in slack.fake.ephemeral} == {text.FEEDBACK_THANKS}


async def test_a_thumbs_down_opens_the_form_and_its_reason_is_recorded(slack: SlackHarness) -> None:
    answer, buttons, ref = await _answered(slack)
    down = buttons["negative_button"]["value"]

    await slack.send_form(payloads.feedback_click(value=down, message=answer, trigger_id="111.222.down"))
    await slack.settle()
    (call,) = slack.fake.calls_to("views.open")
    assert call.params["trigger_id"] == "111.222.down"
    (view,) = slack.fake.views
    reasons = view["blocks"][0]["element"]["options"]
    assert [o["value"] for o in reasons] == list(REASONS)
    assert (
        view["blocks"][1]["optional"] is True and view["blocks"][1]["element"]["type"] == "plain_text_input"
    )

    words = "The policy changed in March. " * 40  # longer than what is kept
    response = await slack.send_form(
        payloads.view_submission(view=view, values=payloads.reason_values("outdated", words))
    )
    await slack.settle()

    assert response.status == 200 and await response.text() == ""  # the form closes
    first, second = slack.votes
    assert (first.vote, first.ref, first.reason) == ("down", ref, "")
    assert (second.vote, second.ref, second.reason) == ("down", ref, "outdated")
    assert second.comment == words.strip()[:COMMENT_LIMIT] and second.user == payloads.USER
    metrics = await scrape(slack.http)
    assert metrics.value("threadwise_feedback_total", platform="slack", kb=KB, vote="down") == 1
    assert slack.fake.ephemeral == []  # the form was the answer to the click
    (kept,) = await slack.chat.feedback.book.votes(since=0)  # one vote, the reason kept with it
    assert (kept.vote, kept.reason, kept.comment) == ("down", "outdated", second.comment)
    assert kept.note is not None and (kept.note.question, kept.note.documents) == (QUESTION, ("vpn.md",))


async def test_a_form_sent_without_a_reason_is_shown_again_with_the_error(slack: SlackHarness) -> None:
    answer, buttons, _ = await _answered(slack)
    await slack.send_form(payloads.feedback_click(value=buttons["negative_button"]["value"], message=answer))
    await slack.settle()
    (view,) = slack.fake.views

    response = await slack.send_form(payloads.view_submission(view=view, values=payloads.reason_values(None)))
    await slack.settle()

    assert response.status == 200
    assert await response.json() == {
        "response_action": "errors",
        "errors": {"reason": slack_text.REASON_MISSING},
    }
    assert [v.reason for v in slack.votes] == [""]  # only the click


FORGED_FORMS = {
    "no private_metadata": ({"callback_id": "threadwise_feedback_reason"}, "wrong"),
    "metadata not JSON": ({"callback_id": "threadwise_feedback_reason", "private_metadata": "{ref"}, "wrong"),
    "metadata a list": ({"callback_id": "threadwise_feedback_reason", "private_metadata": "[1]"}, "wrong"),
    "ref not a string": (
        {"callback_id": "threadwise_feedback_reason", "private_metadata": '{"ref": 7}'},
        "wrong",
    ),
    "ref too long": (
        {"callback_id": "threadwise_feedback_reason", "private_metadata": json.dumps({"ref": "x" * 999})},
        "wrong",
    ),
    "reason not ours": (
        {"callback_id": "threadwise_feedback_reason", "private_metadata": '{"ref": "Ev1"}'},
        "sabotage",
    ),
    "another form": ({"callback_id": "someone_elses_form", "private_metadata": '{"ref": "Ev1"}'}, "wrong"),
}


@pytest.mark.parametrize("view, reason", FORGED_FORMS.values(), ids=FORGED_FORMS)
async def test_a_forged_or_damaged_form_is_answered_without_a_5xx_and_records_nothing(
    slack: SlackHarness, view: dict[str, Any], reason: str
) -> None:
    response = await slack.send_form(
        payloads.view_submission(view=view, values=payloads.reason_values(reason))
    )
    await slack.settle()

    assert response.status < 500
    assert slack.votes == []


async def test_a_form_whose_state_is_not_slacks_shape_is_answered_without_a_5xx(slack: SlackHarness) -> None:
    view = {"callback_id": "threadwise_feedback_reason", "private_metadata": '{"ref": "Ev1"}'}
    for values in ({"reason": "wrong"}, {"reason": {"reason_choice": {"selected_option": "wrong"}}}, []):
        response = await slack.send_form(payloads.view_submission(view=view, values=values))  # type: ignore[arg-type]
        assert response.status < 500
    await slack.settle()
    assert slack.votes == []


FORGED_CLICKS = {
    "no vote": "Ev1",
    "a vote not ours": "meh:Ev1",
    "no ref": "up:",
    "ref too long": "up:" + "x" * 999,
}


@pytest.mark.parametrize("value", FORGED_CLICKS.values(), ids=FORGED_CLICKS)
async def test_a_click_whose_value_is_not_ours_is_acked_and_ignored(slack: SlackHarness, value: str) -> None:
    message = {"ts": payloads.new_ts(), "text": "an answer"}

    response = await slack.send_form(payloads.feedback_click(value=value, message=message))
    await slack.settle()

    assert response.status == 200
    assert slack.votes == [] and slack.fake.views == [] and slack.fake.ephemeral == []


async def test_the_buttons_of_older_answers_still_count_and_never_count_one_person_twice(
    slack: SlackHarness,
) -> None:
    """Answers posted before Slack's feedback buttons carry two buttons, each naming the question."""
    answer = {"ts": payloads.new_ts(), "thread_ts": payloads.new_ts(), "text": "an older answer"}

    def click(action: str, user: str = payloads.USER) -> str:
        return payloads.block_actions(action_id=action, value="EvOLD", message=answer, user=user)

    with structlog.testing.capture_logs() as logs:
        for form in (
            click("threadwise_feedback_up"),
            click("threadwise_feedback_up"),
            click("threadwise_feedback_down", "W333"),
        ):
            assert (await slack.send_form(form)).status == 200
            await slack.settle()

    votes = [(e["user"], e["vote"], e["ref"]) for e in logs if e["event"] == "answer_feedback"]
    assert votes == [(payloads.USER, "up", "EvOLD"), ("W333", "down", "EvOLD")]
    (view,) = slack.fake.views  # the 👎 asks why there too
    assert json.loads(view["private_metadata"]) == {"ref": "EvOLD"}


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
