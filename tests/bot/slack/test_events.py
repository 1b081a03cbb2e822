"""Slack Events API end to end: signed requests in, Web API calls out, answers in the thread."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
import structlog
from aiohttp.test_utils import TestServer

from bot.compose import build_service
from bot.core import text
from bot.platform import Intake
from bot.settings import Settings
from bot.slack.outbound import SlackOutbound
from bot.slack.routes import SlackRoutes
from rag.errors import ConfigError
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, VPN_GUIDE, HarnessFactory, SlackHarness
from tests.conftest import EngineFactory, shared_path
from tests.fakes.slack_server import FakeSlack

QUESTION = "How do I rotate the VPN certificate?"
PERMALINK = "https://fake.slack.com/files/W222/F1/vpn.md"


async def _with_guide(slack: SlackHarness) -> None:
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader=payloads.USER, url=PERMALINK)


# -- asking ---------------------------------------------------------------------------------------


async def test_a_mention_gets_a_placeholder_in_its_thread_then_the_cited_answer_in_its_place(
    slack: SlackHarness,
) -> None:
    await _with_guide(slack)
    body = payloads.app_mention(QUESTION)
    ts = body["event"]["ts"]

    started = time.perf_counter()
    response = await slack.send(body)
    acked = time.perf_counter() - started
    await slack.settle()

    assert response.status == 200
    assert acked < 3.0
    (placeholder,) = slack.posts()
    assert placeholder["channel"] == payloads.CHANNEL
    assert placeholder["thread_ts"] == ts  # in the thread of the question, not the channel
    assert placeholder["text"] == text.THINKING
    (final,) = slack.updates()
    (message,) = slack.fake.thread(payloads.CHANNEL, ts)
    assert final["ts"] == message["ts"]  # the placeholder itself became the answer
    assert "Keychain" in message["text"]
    answer, sources, buttons = message["blocks"]
    assert "Keychain" in answer["text"]["text"]
    assert sources["text"]["text"].startswith("*Sources*\n[1] <" + PERMALINK + "|vpn.md>")
    assert "Certificates" in sources["text"]["text"]  # the section of the guide
    assert buttons["type"] == "context_actions"  # Slack's own 👍/👎, naming the vote and the answer
    (votes,) = buttons["elements"]
    assert votes["type"] == "feedback_buttons" and votes["action_id"] == "threadwise_feedback_vote"
    ref = body["event_id"]  # the job's id, which is the event's
    assert (votes["positive_button"]["value"], votes["negative_button"]["value"]) == (
        f"up:{ref}",
        f"down:{ref}",
    )


async def test_a_direct_message_is_answered_in_a_thread_under_it(slack: SlackHarness) -> None:
    await _with_guide(slack)
    body = payloads.dm_message(QUESTION)

    assert (await slack.send(body)).status == 200
    await slack.settle()

    (placeholder,) = slack.posts()
    assert placeholder["channel"] == payloads.DM
    assert placeholder["thread_ts"] == body["event"]["ts"]
    (message,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    assert "Keychain" in message["text"]


async def test_a_follow_up_in_the_thread_needs_no_mention_and_sees_the_earlier_turn(
    slack: SlackHarness,
) -> None:
    await _with_guide(slack)
    first = payloads.app_mention(QUESTION)
    root = first["event"]["ts"]
    await slack.send(first)
    await slack.settle()

    follow_up = payloads.channel_message("And where do I download the new one?", thread_ts=root)
    elsewhere = payloads.channel_message("Lunch anyone?", thread_ts=payloads.new_ts())
    top_level = payloads.channel_message("Hello World!")
    for body in (follow_up, elsewhere, top_level):
        assert (await slack.send(body)).status == 200
    await slack.settle()

    assert [p["thread_ts"] for p in slack.posts()] == [root, root]  # only the follow-up, in its thread
    history = await slack.chat.memory.history(f"slack:{payloads.TEAM}:{payloads.CHANNEL}:{root}")
    assert [t.text for t in history if t.role == "user"] == [QUESTION, "And where do I download the new one?"]


async def test_follow_ups_without_a_mention_can_be_turned_off(make_slack: HarnessFactory) -> None:
    slack = await make_slack(follow_ups=False)
    first = payloads.app_mention(QUESTION)
    await slack.send(first)
    await slack.settle()

    await slack.send(payloads.channel_message("And then?", thread_ts=first["event"]["ts"]))
    await slack.settle()

    assert len(slack.posts()) == 1


async def test_one_message_arriving_as_app_mention_and_as_message_is_answered_once(
    slack: SlackHarness,
) -> None:
    await _with_guide(slack)
    mention = payloads.app_mention(QUESTION)
    event = mention["event"]
    # The same user message, as message.channels delivers it: another event_id, the same ts.
    as_message = payloads.channel_message(event["text"], ts=event["ts"])

    responses = await asyncio.gather(slack.send(mention), slack.send(as_message))
    await slack.settle()

    assert [r.status for r in responses] == [200, 200]
    assert len(slack.posts()) == 1
    assert len(slack.updates()) == 1


async def test_an_empty_mention_is_asked_what_it_wants(slack: SlackHarness) -> None:
    body = payloads.app_mention("")

    await slack.send(body)
    await slack.settle()

    (message,) = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])
    assert message["text"] == text.EMPTY_QUESTION


async def test_a_command_in_the_dm_is_a_command(slack: SlackHarness) -> None:
    await _with_guide(slack)
    body = payloads.dm_message("docs")

    await slack.send(body)
    await slack.settle()

    assert slack.fake.calls_to("chat.postEphemeral") == []  # in the DM a plain reply is private enough
    (message,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    assert message["text"].startswith("*1 document* in the knowledge base:")
    assert "`vpn.md`" in message["text"]


async def test_a_command_by_mention_in_a_channel_is_answered_to_the_asker_only(slack: SlackHarness) -> None:
    body = payloads.app_mention("help")

    await slack.send(body)
    await slack.settle()

    assert slack.posts() == []
    (ephemeral,) = slack.fake.ephemeral
    assert ephemeral["user"] == payloads.USER
    assert ephemeral["thread_ts"] == body["event"]["ts"]
    assert "answers questions from your team's documents" in ephemeral["text"]


# -- what is not for the bot ----------------------------------------------------------------------------


async def test_messages_from_bots_edits_and_deletions_are_ignored(slack: SlackHarness) -> None:
    ours = payloads.dm_message("A DM authored by a bot", bot_id=payloads.BOT_ID, app_id="A111")
    ours["event"]["user"] = payloads.BOT_USER
    other_bot = payloads.dm_message("A DM authored by a bot", bot_id="B999", app_id="A222")
    other_bot["event"]["user"] = "UB111"
    bot_message = payloads.dm_message("legacy integration", subtype="bot_message")
    changed = payloads.dm_message(QUESTION, subtype="message_changed")
    deleted = payloads.dm_message("", subtype="message_deleted")
    joined = payloads.channel_message(f"<@{payloads.BOT_USER}> has joined the channel")
    joined["event"]["subtype"] = "channel_join"

    for body in (ours, other_bot, bot_message, changed, deleted, joined):
        assert (await slack.send(body)).status == 200
    await slack.settle()

    assert slack.posts() == [] and slack.updates() == [] and slack.fake.ephemeral == []


# -- delivery: acks, retries, signatures -------------------------------------------------------------


async def test_a_retry_of_an_event_is_acked_and_dropped(slack: SlackHarness) -> None:
    await _with_guide(slack)
    body = payloads.app_mention(QUESTION)

    with structlog.testing.capture_logs() as logs:
        first = await slack.send(body)
        retry = await slack.send(body, retry_num=1)
        await slack.settle()
        again = await slack.send(body, retry_num=2)
        await slack.settle()

    assert [first.status, retry.status, again.status] == [200, 200, 200]
    assert len(slack.posts()) == 1
    retries = [e for e in logs if e["event"] == "slack_redelivery"]
    assert [(e["event_id"], e["retry_num"]) for e in retries] == [
        (body["event_id"], "1"),
        (body["event_id"], "2"),
    ]
    dropped = [e for e in logs if e["event"] == "duplicate_dropped"]
    assert [e["event_id"] for e in dropped] == [body["event_id"], body["event_id"]]


async def test_an_event_while_slack_cannot_be_reached_is_a_503_and_its_redelivery_is_answered(
    slack: SlackHarness,
) -> None:
    await _with_guide(slack)
    slack.platform._outbound._identity = None  # as after a start while Slack was unreachable
    slack.fake.fail_next("auth.test", status=200, error="fatal_error")  # Slack down
    body = payloads.app_mention(QUESTION)

    with structlog.testing.capture_logs() as logs:
        first = await slack.send(body)
        retry = await slack.send(body, retry_num=1)
        await slack.settle()

    assert [first.status, retry.status] == [503, 200]
    assert sum(e["event"] == "slack_identity_unavailable" for e in logs) == 1
    assert len(slack.posts()) == 1  # answered once, on the redelivery


async def test_a_bad_signature_is_rejected_and_nothing_happens(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), structlog.testing.capture_logs() as logs:
        response = await slack.send(payloads.app_mention(QUESTION), secret="not-the-signing-secret")
        await slack.settle()

    assert response.status == 401
    assert [c.method for c in slack.fake.calls] == ["auth.test"]
    refused = [("slack_request_refused", "signature does not match")]
    assert [(e["event"], e["reason"]) for e in logs] == refused
    assert "VPN" not in caplog.text + repr(logs)  # the message itself is not logged


async def test_a_stale_timestamp_is_rejected_even_with_a_valid_signature(slack: SlackHarness) -> None:
    response = await slack.send(payloads.app_mention(QUESTION), timestamp=int(time.time()) - 6 * 60)
    await slack.settle()

    assert response.status == 401
    assert slack.posts() == []


async def test_url_verification_echoes_the_challenge(slack: SlackHarness) -> None:
    body = payloads.url_verification()

    response = await slack.send(body)

    assert response.status == 200
    assert json.loads(await response.text()) == {"challenge": body["challenge"]}


def test_requests_are_signed_as_slack_signs_them() -> None:
    vector = json.loads(shared_path("fixtures", "slack", "signature_test_vector.json").read_text())
    headers = payloads.signed_headers(
        vector["body"].encode(),
        secret=vector["signing_secret"],
        timestamp=int(vector["headers"]["X-Slack-Request-Timestamp"]),
        content_type="application/x-www-form-urlencoded",
    )
    assert headers["X-Slack-Signature"] == vector["expected_signature"]


async def test_twenty_concurrent_events_are_all_acked_fast_and_all_answered(slack: SlackHarness) -> None:
    await _with_guide(slack)
    bodies = [payloads.app_mention(f"{QUESTION} ({n})", user=f"W{300 + n}") for n in range(20)]

    async def timed(body: dict[str, object]) -> tuple[int, float]:
        started = time.perf_counter()
        response = await slack.send(body)  # type: ignore[arg-type]
        return response.status, time.perf_counter() - started

    results = await asyncio.gather(*(timed(b) for b in bodies))
    await slack.settle()

    assert all(status == 200 for status, _ in results)
    assert max(seconds for _, seconds in results) < 3.0
    assert len(slack.posts()) == 20 and len(slack.updates()) == 20


# -- failures reach the user ---------------------------------------------------------------------------


class _BrokenAnswerer:
    async def answer(self, question: str, passages: object, **_: object) -> object:
        raise RuntimeError("pool exhausted, password=hunter2")

    async def aclose(self) -> None:
        pass


async def test_a_failure_gets_a_short_apology_with_the_event_ref_in_the_thread_and_a_log_line(
    make_slack: HarnessFactory,
) -> None:
    slack = await make_slack(answerer=_BrokenAnswerer())
    await _with_guide(slack)
    body = payloads.app_mention(QUESTION, event_id="Ev0123456789ABCDEF")

    with structlog.testing.capture_logs() as logs:
        await slack.send(body)
        await slack.settle()

    (message,) = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])
    assert message["text"] == text.INTERNAL_ERROR.format(doing="answering", ref="Ev0123456789")
    assert "hunter2" not in message["text"] and "Traceback" not in message["text"]
    failed = [e for e in logs if e["event"] == "job_failed"]
    assert failed and failed[0]["job_id"] == "Ev0123456789ABCDEF"


async def test_a_token_slack_refuses_stops_start_up_with_what_to_fix(
    make_engine: EngineFactory, clean_env: pytest.MonkeyPatch
) -> None:
    async with FakeSlack() as fake:
        settings = Settings(
            slack_bot_token="xoxb-revoked",
            slack_signing_secret=payloads.SIGNING_SECRET,
            slack_api_url=fake.api_url,
        )
        server = TestServer(build_service(settings, make_engine()).app, host="127.0.0.1")
        with pytest.raises(ConfigError, match="Slack refused SLACK_BOT_TOKEN \\(invalid_auth\\)"):
            await server.start_server()
        await server.close()


def test_http_mode_without_a_signing_secret_is_a_config_error() -> None:
    outbound = SlackOutbound(bot_token="xoxb-1", api_url="https://slack.com/api/")
    intake = Intake(submit=_never, feedback=_never, drain=_never)
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        SlackRoutes(outbound, intake, signing_secret=None, app_token=None)


async def _never(*_: object) -> None:
    raise AssertionError("nothing is submitted")
