"""Answers that look native in Teams, through the real path: Teams activities with Bot Framework tokens
POSTed to /api/messages, botbuilder sending to the fake Bot Connector, which speaks Teams' streaming
protocol (tests/fakes/bot_connector.py). Streams are paced at Teams' one update a second, so the
streaming tests take a few seconds each.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import pytest

from bot.core.feedback import COMMENT_LIMIT
from bot.teams.native import ABSTRACT_CHARS
from tests.bot.scrape import scrape
from tests.bot.teams.activities import (
    APP_ID,
    GROUP_CHAT,
    PERSONAL_CONVERSATION,
    group_chat_mention,
    personal_message,
    submit_action,
)
from tests.bot.teams.conftest import KB, VPN_GUIDE, Signer, TeamsBot, TeamsBotFactory
from tests.bot.teams.test_endpoint import ScriptedAnswerer
from tests.fakes.bot_connector import Call, FakeBotConnector

QUESTION = "How do I rotate the VPN certificate?"
ANSWER = "Open the Keychain app and delete the old certificate [1]. Then download the new one [1]."
PARTIALS = ("Open the Keychain app", "Open the Keychain app and delete the old certificate [1].")


def PacedAnswerer(partials: Sequence[str] = PARTIALS) -> ScriptedAnswerer:
    """Streams `partials` about a second apart, as a model writing, then answers ANSWER."""
    return ScriptedAnswerer(ANSWER, stream=partials, pace=1.05)


async def _bot(make: TeamsBotFactory, **options: Any) -> TeamsBot:
    bot = await make(app_id=APP_ID, **options)
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE, url="https://contoso.sharepoint.com/docs/vpn.md")
    return bot


def _complete_answers(fake: FakeBotConnector) -> list[Call]:
    """The messages the user sees with the whole answer (accepted by the connector)."""
    return [c for c in fake.activities(type="message") if c.accepted and ANSWER in c.text]


def _claims(call: Call) -> list[dict[str, Any]]:
    (entity,) = [e for e in call.body["entities"] if e["type"] == "https://schema.org/Message"]
    return list(entity.get("citation") or [])


# -- streaming ----------------------------------------------------------------------------------------


async def test_a_personal_chat_answer_streams_informative_then_text_then_the_final_message(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, answerer=PacedAnswerer())
    activity = personal_message(QUESTION, service_url=fake.service_url)

    response = await bot.post(activity, token=sign())

    assert response.status == 200
    informative, *chunks, final = fake.calls
    assert all(c.accepted for c in fake.calls)  # nothing throttled, out of order or refused
    assert all((c.method, c.conversation_id) == ("POST", PERSONAL_CONVERSATION) for c in fake.calls)
    assert informative.type == "typing"
    assert informative.text == "Searching your documents…"
    assert informative.stream == {"type": "streaminfo", "streamType": "informative", "streamSequence": 1}
    stream_id = informative.response_id
    assert stream_id
    assert [c.type for c in chunks] == ["typing"] * len(PARTIALS)
    assert [c.text for c in chunks] == list(PARTIALS)  # the whole text so far each time
    assert [c.stream for c in chunks] == [
        {"type": "streaminfo", "streamId": stream_id, "streamType": "streaming", "streamSequence": n}
        for n in range(2, 2 + len(PARTIALS))
    ]
    assert all(b.at - a.at >= 0.9 for a, b in itertools.pairwise(chunks))
    assert final.type == "message" and final.text == ANSWER
    assert final.stream == {"type": "streaminfo", "streamId": stream_id, "streamType": "final"}
    (label,) = [e for e in final.body["entities"] if e["type"] == "https://schema.org/Message"]
    assert label["additionalType"] == ["AIGeneratedContent"]
    (claim,) = _claims(final)
    assert claim["position"] == 1 and claim["appearance"]["name"] == "vpn.md"
    assert claim["appearance"]["url"] == "https://contoso.sharepoint.com/docs/vpn.md"
    assert 0 < len(claim["appearance"]["abstract"]) <= ABSTRACT_CHARS
    assert final.body["channelData"] == {"feedbackLoopEnabled": True}


async def test_a_group_chat_gets_typing_then_one_final_message(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, answerer=PacedAnswerer())

    await bot.post(group_chat_mention(QUESTION, service_url=fake.service_url), token=sign())

    *typing, answer = fake.calls
    assert len(typing) >= 2 and all(c.type == "typing" and c.stream is None for c in typing)
    assert all(not c.text for c in typing)  # no partial answer: Teams does not stream here
    assert (answer.type, answer.conversation_id, answer.text) == ("message", GROUP_CHAT, ANSWER)
    assert answer.stream is None
    assert [c["position"] for c in _claims(answer)] == [1]
    assert answer.body["channelData"] == {"feedbackLoopEnabled": True}


@pytest.mark.parametrize("refusal", ["not allowed", "stopped by the user"])
async def test_a_refused_stream_ends_with_exactly_one_complete_message(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer, refusal: str
) -> None:
    if refusal == "not allowed":
        fake.refuse_streaming()
    else:
        fake.stop_streams_after(1)
    bot = await _bot(make_teams_bot, answerer=PacedAnswerer())

    response = await bot.post(personal_message(QUESTION, service_url=fake.service_url), token=sign())

    assert response.status == 200
    assert any(not c.accepted for c in fake.calls)  # Teams did refuse
    (answer,) = _complete_answers(fake)
    assert answer.text == ANSWER and answer.stream is None
    assert [c["position"] for c in _claims(answer)] == [1]
    assert answer.body["channelData"] == {"feedbackLoopEnabled": True}
    assert [c for c in fake.calls if c.accepted and c.type == "message"] == [answer]


async def test_an_extractive_answer_carries_citations_but_no_ai_label(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot)  # no language model: the passages are quoted

    await bot.post(personal_message(QUESTION, service_url=fake.service_url), token=sign())

    final = fake.activities(type="message")[-1]
    assert final.accepted and "[1]" in final.text
    (entity,) = [e for e in final.body["entities"] if e["type"] == "https://schema.org/Message"]
    assert "additionalType" not in entity
    assert [c["position"] for c in entity["citation"]] == [1]
    assert final.stream is not None and final.stream["streamType"] == "final"


# -- the feedback loop ----------------------------------------------------------------------------


async def test_a_submit_action_records_the_vote_once_and_gets_an_empty_200(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, answerer=PacedAnswerer(PARTIALS[:1]))
    await bot.post(personal_message(QUESTION, service_url=fake.service_url), token=sign())
    answer_id = fake.calls[0].response_id  # the stream's id: the answer's message
    vote = submit_action("dislike", answer_id, service_url=fake.service_url, text="Out of date since March")

    first = await bot.post(vote, token=sign())
    again = await bot.post(vote, token=sign())  # a double submit, or Teams retrying

    assert (first.status, again.status) == (200, 200)
    assert await first.json() == {} and await again.json() == {}
    metrics = await scrape(bot.client)
    assert metrics.value("threadwise_feedback_total", platform="teams", kb=KB, vote="down") == 1
    (kept,) = await bot.chat.feedback.book.votes(since=0)  # one per person per answer
    assert (kept.user, kept.vote, kept.comment) == (
        vote["from"]["aadObjectId"],
        "down",
        "Out of date since March",
    )
    assert kept.note is not None and kept.note.question == QUESTION  # the answer it was on, by its id
    assert [c for c in fake.calls if c.at > fake.calls[-1].at] == []  # nothing posted in the chat


def _malformed() -> list[tuple[str, dict[str, Any]]]:
    def variant(**changes: Any) -> dict[str, Any]:
        return {"reaction": "like", "feedback": json.dumps({"feedbackText": "ok"}), **changes}

    return [
        ("unknown reaction", {"actionName": "feedback", "actionValue": variant(reaction="love")}),
        ("another action", {"actionName": "share", "actionValue": variant()}),
        ("actionValue not an object", {"actionName": "feedback", "actionValue": ["like"]}),
        ("value not an object", "like"),  # type: ignore[list-item]
        ("feedback not JSON", {"actionName": "feedback", "actionValue": variant(feedback="{oops")}),
        ("feedback a JSON list", {"actionName": "feedback", "actionValue": variant(feedback="[1]")}),
        (
            "feedbackText a number",
            {"actionName": "feedback", "actionValue": variant(feedback='{"feedbackText": 5}')},
        ),
        (
            "feedback an object",
            {"actionName": "feedback", "actionValue": variant(feedback={"feedbackText": "x"})},
        ),
    ]


@pytest.mark.parametrize(("case", "value"), _malformed(), ids=[c for c, _ in _malformed()])
async def test_a_malformed_submit_action_gets_a_400_and_records_nothing(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer, case: str, value: Any
) -> None:
    bot = await make_teams_bot(app_id=APP_ID)
    invoke = submit_action("like", "1767765488332", service_url=fake.service_url)
    invoke["value"] = value

    response = await bot.post(invoke, token=sign())

    assert response.status == 400, case
    assert "message" in (await response.json())["error"]
    assert (await scrape(bot.client)).value("threadwise_feedback_total") is None


@pytest.mark.parametrize("reply_to", [None, "", 17, "1767765488332 OR 1=1", "9" * 200])
async def test_a_submit_action_without_a_valid_answer_id_gets_a_400(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer, reply_to: object
) -> None:
    bot = await make_teams_bot(app_id=APP_ID)
    invoke = submit_action("like", "1767765488332", service_url=fake.service_url)
    invoke["replyToId"] = reply_to

    response = await bot.post(invoke, token=sign())

    assert 400 <= response.status < 500
    assert (await scrape(bot.client)).value("threadwise_feedback_total") is None


def test_the_typed_feedback_is_kept_capped() -> None:
    from bot.teams.translate import Feedback, feedback_loop

    long = submit_action("like", "1767765488332", service_url="https://x/", text="ok " * COMMENT_LIMIT)
    plain = submit_action("dislike", "1767765488332", service_url="https://x/", text=None)

    kept = feedback_loop(long)
    assert isinstance(kept, Feedback) and kept.vote == "up" and kept.loop
    assert len(kept.comment) == COMMENT_LIMIT and kept.comment.startswith("ok ok")
    assert feedback_loop(plain) == Feedback(
        "down", "1767765488332", kept.workspace, kept.user, invoke=True, comment="", loop=True
    )
