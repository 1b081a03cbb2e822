"""Choosing who may ask about a file sent in a DM, through Slack's real endpoint: the buttons under the
upload's reply, the channel picker, "for #channel" in the message, and DEFAULT_UPLOAD_SCOPE when no
one chooses in time. Until a choice, a new document answers only its sender."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote, unquote

from bot.core import text
from rag.scopes import WORKSPACE, channel_scope, private_scope
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, HarnessFactory, SlackHarness

QUESTION = "How many vacation days do new employees get?"
SALES = "C0SALES01"  # a real-looking channel id: Slack writes `<#C0SALES01|sales>` in a message
OTHER = "W-OTHER"
ADMIN = "W-ADMIN"


def policy(days: int) -> bytes:
    return f"# Vacation policy\n\nNew employees get {days} vacation days a year.\n".encode()


def _said(message: dict[str, Any]) -> str:
    return str(message.get("text", "")) + json.dumps(message.get("blocks", ""))


async def _upload(slack: SlackHarness, *, text: str = "", user: str = payloads.USER) -> dict[str, Any]:
    """Send draft.md in a DM; the bot's reply to it, as it reads now."""
    shared = slack.fake.add_file("draft.md", policy(99))
    body = payloads.dm_file_share([shared], text=text, user=user)
    await slack.send(body)
    await slack.settle()
    (reply,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    return reply


def _scope_block(message: dict[str, Any]) -> dict[str, Any]:
    (block,) = [
        b for b in message.get("blocks") or [] if str(b.get("block_id", "")).startswith("threadwise_scope_")
    ]
    return block


async def _click(
    slack: SlackHarness,
    message: dict[str, Any],
    action_id: str,
    *,
    user: str = payloads.USER,
    picked: str = "",
) -> None:
    """A click on one of the scope buttons under `message` (or a channel picked there)."""
    form = payloads.block_actions(
        action_id=action_id, value="", message=message, channel=payloads.DM, user=user
    )
    payload = json.loads(unquote(form.removeprefix("payload=")))
    action = payload["actions"][0]
    action.update(block_id=_scope_block(message)["block_id"])
    if picked:
        action.update(type="conversations_select", selected_conversation=picked)
        del action["value"]
    response = await slack.send_form("payload=" + quote(json.dumps(payload)))
    assert response.status == 200
    await slack.settle()


async def _answer_in(slack: SlackHarness, channel: str) -> str:
    shown = len(slack.fake.ephemeral)
    body = payloads.app_mention(QUESTION, channel=channel)
    await slack.send(body)
    await slack.settle()
    return _said([*slack.fake.thread(channel, body["event"]["ts"]), *slack.fake.ephemeral[shown:]][-1])


async def _answer_in_dm(slack: SlackHarness, user: str = payloads.USER) -> str:
    body = payloads.dm_message(QUESTION, user=user)
    await slack.send(body)
    await slack.settle()
    return _said(slack.fake.thread(payloads.DM, body["event"]["ts"])[-1])


async def _scope(slack: SlackHarness) -> str:
    (doc,) = await slack.engine.documents(KB)
    return doc.scope


async def test_a_dm_upload_answers_only_its_sender_until_they_share_it(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack)

    assert "Only you can ask about it" in reply["text"]
    assert "in 10 minutes everyone in the workspace will be able to" in reply["text"]
    elements = {e["action_id"]: e for e in _scope_block(reply)["elements"]}
    assert set(elements) == {
        "threadwise_scope_workspace",
        "threadwise_scope_private",
        "threadwise_scope_channel",
    }
    assert elements["threadwise_scope_channel"]["type"] == "conversations_select"
    assert "99 vacation" not in await _answer_in(slack, payloads.CHANNEL)  # nobody chose yet
    assert "99 vacation" not in await _answer_in_dm(slack, OTHER)
    assert "99 vacation" in await _answer_in_dm(slack)

    await _click(slack, reply, "threadwise_scope_workspace")

    (now,) = [m for m in slack.fake.thread(payloads.DM, reply["thread_ts"]) if m["ts"] == reply["ts"]]
    assert "Everyone in the workspace can ask about it." in now["text"] and "draft.md" in now["text"]
    assert _scope_block(now)  # the buttons stay, to change it again
    assert await _scope(slack) == WORKSPACE
    assert "99 vacation" in await _answer_in(slack, payloads.CHANNEL)  # at once, no cache in the way


async def test_a_channel_picked_under_the_upload_is_the_only_place_it_answers(
    make_slack: HarnessFactory,
) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack)

    await _click(slack, reply, "threadwise_scope_channel", picked=SALES)

    assert await _scope(slack) == channel_scope(SALES)
    assert "99 vacation" in await _answer_in(slack, SALES)
    assert "99 vacation" not in await _answer_in(slack, payloads.CHANNEL)
    assert "99 vacation" not in await _answer_in_dm(slack)  # nor in the sender's DM: it is the channel's


async def test_keep_private_after_sharing_takes_it_back_at_once(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=0)  # the default (workspace) applies at once
    reply = await _upload(slack)
    assert await _scope(slack) == WORKSPACE
    assert "99 vacation" in await _answer_in(slack, payloads.CHANNEL)  # cached there now

    await _click(slack, reply, "threadwise_scope_private")

    assert await _scope(slack) == private_scope(payloads.USER)
    assert "99 vacation" not in await _answer_in(slack, payloads.CHANNEL)


async def test_without_a_choice_the_default_applies_when_its_time_comes(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=0.001)  # 60 ms
    assert slack.chat.timer is not None
    await slack.chat.timer.stop()  # its ticks (every 0.5 s) are this test's own
    reply = await _upload(slack)
    assert await _scope(slack) == private_scope(payloads.USER)

    await asyncio.sleep(0.1)
    assert await slack.chat.timer.run_due() == 1  # what the serve's timer does every few seconds
    await slack.settle()

    assert await _scope(slack) == WORKSPACE
    told = slack.fake.thread(payloads.DM, reply["thread_ts"])[-1]
    assert "No choice was made in time" in told["text"] and "Everyone in the workspace" in told["text"]
    assert "99 vacation" in await _answer_in(slack, payloads.CHANNEL)
    assert await slack.chat.timer.run_due() == 0  # once


async def test_a_choice_made_in_time_is_not_overridden_by_the_default(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=0.001)
    reply = await _upload(slack)
    await _click(slack, reply, "threadwise_scope_private")

    await asyncio.sleep(0.1)
    assert slack.chat.timer is not None
    assert await slack.chat.timer.run_due() == 0
    assert await _scope(slack) == private_scope(payloads.USER)


async def test_someone_else_cannot_choose_for_an_upload(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack)

    await _click(slack, reply, "threadwise_scope_workspace", user=OTHER)

    assert await _scope(slack) == private_scope(payloads.USER)
    refusals = [m["text"] for m in slack.fake.ephemeral] + [
        m["text"] for m in slack.fake.thread(payloads.DM, reply["thread_ts"])
    ]
    assert any("Only the person who sent these documents" in r for r in refusals)
    (still,) = [m for m in slack.fake.thread(payloads.DM, reply["thread_ts"]) if m["ts"] == reply["ts"]]
    assert still["text"] == reply["text"] and _scope_block(still)  # the sender's buttons stay as they were


async def test_for_channel_in_the_message_keeps_the_file_for_that_channel(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack, text=f"for <#{SALES}|sales>")

    assert await _scope(slack) == channel_scope(SALES)
    assert "Only channel" in reply["text"] and not [
        b for b in reply.get("blocks") or [] if str(b.get("block_id", "")).startswith("threadwise_scope_")
    ]
    assert "99 vacation" in await _answer_in(slack, SALES)
    assert "99 vacation" not in await _answer_in(slack, payloads.CHANNEL)


async def test_buttons_of_a_forgotten_upload_say_so(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack)
    chooser = slack.chat.handler._chooser
    chooser._choices = type(chooser._choices)()  # a restart without Redis forgets
    await _click(slack, reply, "threadwise_scope_workspace")

    (now,) = [m for m in slack.fake.thread(payloads.DM, reply["thread_ts"]) if m["ts"] == reply["ts"]]
    assert text.CHOICE_EXPIRED.split(".")[0] in now["text"]
    assert await _scope(slack) == private_scope(payloads.USER)


async def test_a_channel_merely_named_with_the_file_is_not_a_choice(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack, text=f"the policy we discussed in <#{SALES}|sales>")

    assert await _scope(slack) == private_scope(payloads.USER)  # still waiting for a choice
    assert _scope_block(reply)
