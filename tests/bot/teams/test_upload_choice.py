"""Choosing who may ask about a file sent in a Teams personal chat, through the real /api/messages
endpoint and the fake Bot Connector: the card under the upload's reply (Action.Execute buttons), a
click answered at once and the card replaced by the job's reply, and DEFAULT_UPLOAD_SCOPE when no one
chooses in time. Until a choice, a new document answers only its sender."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

from aiohttp import ClientResponse

from bot.core import text
from rag.scopes import WORKSPACE, private_scope
from tests.bot.teams.activities import (
    PERSONAL_CONVERSATION,
    USER_AAD,
    USER_ID,
    channel_mention,
    emulator,
    feedback_invoke,
    personal_file_upload,
    personal_message,
)
from tests.bot.teams.conftest import KB, TeamsBot, TeamsBotFactory
from tests.fakes.bot_connector import Call, FakeBotConnector

QUESTION = "How many vacation days do new employees get?"
OTHER_AAD = "0b0b0b0b-0000-4000-8000-000000000001"
OTHER_ID = "29:1other-user-mri"
OTHER_CONVERSATION = "a:1other-personal-conversation"
SHARE = "Share with everyone"
KEEP = "Keep it for me"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
ACK_TYPE = "application/vnd.microsoft.activity.message"

_invokes = itertools.count(1)


def policy(days: int) -> bytes:
    return f"# Vacation policy\n\nNew employees get {days} vacation days a year.\n".encode()


def _scope_card(call: Call) -> dict[str, Any] | None:
    """The card of scope buttons a message carries, if it carries one."""
    for attachment in call.body.get("attachments") or ():
        content = attachment.get("content") or {}
        actions = content.get("actions") or []
        if attachment.get("contentType") == ADAPTIVE_CARD and any(
            a.get("verb") == "threadwise.scope" for a in actions
        ):
            return dict(content)
    return None


def _holding_card(fake: FakeBotConnector, since: int = 0) -> Call:
    """The last message (sent or edited) since call number `since` that carries the scope card."""
    (*_, last) = [c for c in fake.calls[since:] if c.type == "message" and _scope_card(c) is not None]
    return last


def _action(card_call: Call, title: str) -> dict[str, Any]:
    card = _scope_card(card_call)
    assert card is not None
    (action,) = [a for a in card["actions"] if a["title"] == title]
    return dict(action)


async def _upload(bot: TeamsBot) -> Call:
    """Send draft.md in personal chat; the message that holds the bot's reply to it, as it reads now."""
    before = len(bot.fake.calls)
    url = bot.fake.add_file("draft.md", policy(99))
    await bot.post(personal_file_upload("draft.md", url, service_url=bot.fake.service_url))
    return _holding_card(bot.fake, before)


def _invoke(
    action: dict[str, Any],
    card_id: str | None,
    *,
    service_url: str,
    user_aad: str = USER_AAD,
    user_id: str = USER_ID,
    conversation: str = PERSONAL_CONVERSATION,
) -> dict[str, Any]:
    """What Teams posts when someone presses `action` on the card in message `card_id`: the captured
    personal-chat Action.Execute invoke (invoke_adaptive_card_action_personal.json), the action copied
    from the card."""
    invoke = feedback_invoke("up", "unused", service_url=service_url)
    invoke["id"] = f"f:00000000-0000-4000-8000-{next(_invokes):012d}"
    invoke["from"] = {"id": user_id, "name": "Someone", "aadObjectId": user_aad}
    invoke["conversation"] = {**invoke["conversation"], "id": conversation}
    invoke["value"] = {"action": copy.deepcopy(action), "trigger": "manual"}
    if card_id is None:
        del invoke["replyToId"]
    else:
        invoke["replyToId"] = card_id
    return invoke


async def _click(bot: TeamsBot, card: Call, title: str, **who: str) -> ClientResponse:
    invoke = _invoke(_action(card, title), card.response_id, service_url=bot.fake.service_url, **who)
    return await bot.post(invoke)


def _said(call: Call) -> str:
    return call.text + str(call.body.get("entities", "")) + str(call.body.get("attachments", ""))


async def _answer_in_channel(bot: TeamsBot) -> str:
    await bot.post(channel_mention(QUESTION, service_url=bot.fake.service_url))
    return _said(bot.fake.activities(type="message")[-1])


async def _answer_in_personal_chat(bot: TeamsBot, user_aad: str = USER_AAD) -> str:
    await bot.post(personal_message(QUESTION, service_url=bot.fake.service_url, user_aad=user_aad))
    return _said(bot.fake.activities(type="message")[-1])


async def _scope(bot: TeamsBot) -> str:
    (doc,) = await bot.engine.documents(KB)
    return doc.scope


def _edits_of(fake: FakeBotConnector, activity_id: str, since: int) -> list[Call]:
    return [c for c in fake.calls[since:] if c.method == "PUT" and c.activity_id == activity_id]


async def test_a_personal_chat_upload_answers_only_its_sender_until_they_share_it(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=10)
    reply = await _upload(bot)

    assert "Only you can ask about it" in reply.text
    assert "in 10 minutes everyone in the workspace will be able to" in reply.text
    card = _scope_card(reply)
    assert card is not None and float(card["version"]) >= 1.4  # Action.Execute needs 1.4
    assert [a["type"] for a in card["actions"]] == ["Action.Execute", "Action.Execute"]
    assert [a["title"] for a in card["actions"]] == [SHARE, KEEP]
    for action in card["actions"]:
        assert set(action["data"]) == {"threadwise", "upload", "choice"}  # small; no user, no scope
    assert "Post the file in that channel and mention me" in str(card["body"])  # one channel only: how
    assert "99 vacation" not in await _answer_in_channel(bot)  # nobody chose yet
    assert "99 vacation" not in await _answer_in_personal_chat(bot, OTHER_AAD)
    assert "99 vacation" in await _answer_in_personal_chat(bot)

    before = len(fake.calls)
    response = await _click(bot, reply, SHARE)

    assert response.status == 200  # at once; the job's reply replaces the card
    ack = await response.json()
    assert ack["statusCode"] == 200 and ack["type"] == ACK_TYPE and ack["value"]
    (*_, now) = _edits_of(fake, reply.response_id, before)
    assert "Everyone in the workspace can ask about it." in now.text and "draft.md" in now.text
    assert _scope_card(now) is not None  # the buttons stay, to change it again
    assert await _scope(bot) == WORKSPACE
    assert "99 vacation" in await _answer_in_channel(bot)  # at once, no cache in the way


async def test_keep_it_for_me_after_sharing_takes_it_back_at_once(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=0)  # the default (workspace) applies at once
    reply = await _upload(bot)
    assert "Everyone in the workspace can ask about it." in reply.text
    assert _scope_card(reply) is not None  # to change it still
    assert "99 vacation" in await _answer_in_channel(bot)  # cached there now

    before = len(fake.calls)
    assert (await _click(bot, reply, KEEP)).status == 200

    assert await _scope(bot) == private_scope(USER_AAD)
    (*_, now) = _edits_of(fake, reply.response_id, before)
    assert "Only you can ask about it" in now.text and _scope_card(now) is not None
    assert "99 vacation" not in await _answer_in_channel(bot)
    assert "99 vacation" in await _answer_in_personal_chat(bot)


async def test_someone_elses_click_is_refused_and_changes_nothing(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=10)
    reply = await _upload(bot)

    before = len(fake.calls)
    await _click(bot, reply, SHARE, user_aad=OTHER_AAD, user_id=OTHER_ID, conversation=OTHER_CONVERSATION)

    assert await _scope(bot) == private_scope(USER_AAD)
    assert _edits_of(fake, reply.response_id, before) == []  # the uploader's card is untouched
    (refusal,) = [c for c in fake.calls[before:] if c.type == "message"]
    assert refusal.method == "POST" and "Only the person who sent these documents" in refusal.text
    assert refusal.conversation_id == OTHER_CONVERSATION  # told to the one who clicked
    assert "99 vacation" not in await _answer_in_channel(bot)


async def test_a_forged_click_changes_nothing(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    """Anyone can post an invoke: the data is checked (400, nothing done), and "private" means the
    clicker's own scope whatever else the data says."""
    bot = await make_teams_bot(upload_choice_minutes=0)
    reply = await _upload(bot)
    assert await _scope(bot) == WORKSPACE
    share = _action(reply, SHARE)
    key = share["data"]["upload"]

    def forged(data: dict[str, Any], card: str | None = reply.response_id) -> dict[str, Any]:
        return _invoke({**share, "data": data}, card, service_url=fake.service_url)

    malformed = {
        "a choice of its own": forged({"threadwise": "scope", "upload": key, "choice": "everyone"}),
        "someone else's scope": forged(
            {"threadwise": "scope", "upload": key, "choice": private_scope(OTHER_AAD)}
        ),
        "a channel named in the data": forged(
            {"threadwise": "scope", "upload": key, "choice": "channel:19:x@thread.tacv2"}
        ),
        "no upload": forged({"threadwise": "scope", "choice": "workspace"}),
        "an upload that is no key": forged(
            {"threadwise": "scope", "upload": {"$gt": ""}, "choice": "private"}
        ),
        "an overlong key": forged({"threadwise": "scope", "upload": "1" * 5000, "choice": "private"}),
        "no card clicked": forged({"threadwise": "scope", "upload": key, "choice": "private"}, None),
    }
    before = len(fake.calls)
    for name, invoke in malformed.items():
        response = await bot.post(invoke)
        assert response.status == 400, name
        body = await response.json()
        assert body["statusCode"] == 400 and body["type"] == "application/vnd.microsoft.error", name
    assert fake.calls[before:] == []  # nothing said, nothing replaced
    assert await _scope(bot) == WORKSPACE

    unknown = forged({"threadwise": "scope", "upload": "1759944781999.0123456789", "choice": "private"})
    assert (await bot.post(unknown)).status == 200
    assert await _scope(bot) == WORKSPACE
    assert text.CHOICE_EXPIRED.split(".")[0] in fake.activities(type="message")[-1].text

    sly = forged(
        {
            "threadwise": "scope",
            "upload": key,
            "choice": "private",
            "user": OTHER_AAD,
            "scope": private_scope(OTHER_AAD),
        }
    )
    assert (await bot.post(sly)).status == 200
    assert await _scope(bot) == private_scope(USER_AAD)  # the clicker's, never one named in the data


async def test_without_a_choice_the_default_applies_when_its_time_comes(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=0.001)  # 60 ms
    assert bot.chat.timer is not None
    await bot.chat.timer.stop()  # its ticks (every 0.5 s) are this test's own
    await _upload(bot)
    assert await _scope(bot) == private_scope(USER_AAD)

    await asyncio.sleep(0.1)
    before = len(fake.calls)
    assert await bot.chat.timer.run_due() == 1  # what the serve's timer does every few seconds
    await bot.chat.runner.drain()

    assert await _scope(bot) == WORKSPACE
    told = _holding_card(fake, before)
    assert "No choice was made in time" in told.text and "Everyone in the workspace" in told.text
    assert "99 vacation" in await _answer_in_channel(bot)
    assert await bot.chat.timer.run_due() == 0  # once


async def test_the_emulator_shows_the_same_card(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=10)
    url = fake.add_file("draft.md", policy(99))
    await bot.post(emulator(personal_file_upload("draft.md", url, service_url=fake.service_url)))

    reply = _holding_card(fake)
    card = _scope_card(reply)
    assert card is not None and [a["title"] for a in card["actions"]] == [SHARE, KEEP]
