"""The pure translation: Slack payloads → Incoming / Feedback / AssistantThread, or None."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from bot.slack.address import SlackAddress, SlackHandle
from bot.slack.translate import (
    BotIdentity,
    assistant_thread_from_event,
    command_from_form,
    feedback_from_action,
    message_from_event,
    plain_text,
)
from tests.bot.slack import payloads

BOT = BotIdentity(user_id=payloads.BOT_USER, bot_id=payloads.BOT_ID, team_id=payloads.TEAM)


def test_a_mention_becomes_a_question_addressed_to_its_thread() -> None:
    body = payloads.app_mention("How do I rotate the VPN certificate?", event_id="Ev111")
    event = body["event"]

    intake = message_from_event(body, BOT)

    assert intake is not None and not intake.follow_up_only
    msg = intake.incoming
    assert (msg.platform, msg.workspace, msg.user) == ("slack", "slack-T111", payloads.USER)
    assert msg.text == "How do I rotate the VPN certificate?"
    assert msg.event_id == "Ev111"
    assert msg.message_key == f"T111:C111:{event['ts']}"
    assert msg.thread == f"slack:T111:C111:{event['ts']}"
    address = msg.address.to_dict()
    assert address["thread_ts"] == event["ts"] and address["channel"] == "C111"
    assert msg.mentioned and not msg.is_direct


def test_the_same_message_as_app_mention_and_as_message_has_one_key() -> None:
    mention = payloads.app_mention("hello")
    as_message = payloads.channel_message(mention["event"]["text"], ts=mention["event"]["ts"])

    a, b = message_from_event(mention, BOT), message_from_event(as_message, BOT)

    assert a is not None and b is not None
    assert a.incoming.event_id != b.incoming.event_id
    assert a.incoming.message_key == b.incoming.message_key
    assert a.incoming.text == b.incoming.text


def test_a_reply_in_a_thread_keys_memory_on_the_thread_root() -> None:
    body = payloads.channel_message("and then?", thread_ts="1700000000.000100")

    intake = message_from_event(body, BOT)

    assert intake is not None and intake.follow_up_only
    assert intake.incoming.thread == "slack:T111:C111:1700000000.000100"


@pytest.mark.parametrize(
    "body",
    [
        payloads.channel_message("Hello World!"),  # top level, no mention
        payloads.dm_message("hi", bot_id="B999"),
        payloads.dm_message("hi", subtype="bot_message"),
        payloads.dm_message("hi", subtype="message_changed"),
        payloads.dm_message("", subtype="message_deleted"),
        payloads.dm_message("uploaded a file", subtype="file_share"),  # message_im_file_share_minimal.json
        payloads.dm_message("hi", user=payloads.BOT_USER),
    ],
)
def test_what_is_not_a_question_for_the_bot_is_ignored(body: dict[str, object]) -> None:
    assert message_from_event(body, BOT) is None  # type: ignore[arg-type]


def test_a_dm_is_direct_and_a_dm_thread_may_be_an_assistant_thread() -> None:
    top = message_from_event(payloads.dm_message("hi"), BOT)
    threaded = message_from_event(payloads.dm_message("hi", thread_ts="1700000000.000100"), BOT)

    assert top is not None and top.incoming.is_direct
    assert "assistant" not in top.incoming.address.to_dict()
    assert threaded is not None and threaded.incoming.address.to_dict()["assistant"] is True


def test_files_keep_their_download_url_permalink_and_metadata() -> None:
    shared = {
        "id": "F111",
        "name": "vpn.md",
        "mimetype": "text/markdown",
        "size": 120,
        "url_private": "https://files.slack.com/files-pri/T111-F111/vpn.md",
        "url_private_download": "https://files.slack.com/files-pri/T111-F111/download/vpn.md",
        "permalink": "https://x.slack.com/files/U1/F111/vpn.md",
    }

    intake = message_from_event(payloads.dm_file_share([shared]), BOT)

    assert intake is not None
    (ref,) = intake.incoming.files
    assert (ref.name, ref.size, ref.mimetype, ref.id) == ("vpn.md", 120, "text/markdown", "F111")
    assert ref.url == shared["url_private_download"] and ref.permalink == shared["permalink"]


def test_slack_markup_becomes_plain_text() -> None:
    raw = "<@W111> what does <@U777|ana> say in <#C1|general> about <https://x.com/a|the doc> &amp; <!here>?"

    assert plain_text(raw, bot_user_id="W111") == "what does @ana say in #general about the doc & @here?"


def test_a_slash_command_keeps_its_words_and_replies_to_the_response_url() -> None:
    form = dict(
        parse_qsl(payloads.slash_command("forget vpn.md", response_url="https://hooks.slack.com/c/1"))
    )

    msg = command_from_form(form)

    assert msg is not None
    assert msg.text == "/threadwise forget vpn.md"
    assert msg.address.to_dict()["response_url"] == "https://hooks.slack.com/c/1"
    assert msg.event_id == form["trigger_id"]


def test_a_feedback_click_is_read_from_block_actions() -> None:
    import json
    from urllib.parse import parse_qsl

    message = {"ts": "1700000001.000200", "thread_ts": "1700000000.000100", "text": "answer"}
    form = dict(
        parse_qsl(payloads.block_actions(action_id="threadwise_feedback_up", value="Ev1", message=message))
    )

    feedback = feedback_from_action(json.loads(form["payload"]))

    assert feedback is not None
    assert (feedback.vote, feedback.user, feedback.channel) == ("up", payloads.USER, payloads.CHANNEL)
    assert (feedback.message_ts, feedback.thread_ts, feedback.event_id) == (
        "1700000001.000200",
        "1700000000.000100",
        "Ev1",
    )
    assert feedback_from_action({"actions": [{"action_id": "other"}]}) is None


def test_an_assistant_thread_start_names_the_dm_thread() -> None:
    thread = assistant_thread_from_event(payloads.assistant_thread_started(thread_ts="1726133698.626339"))

    assert thread is not None
    assert (thread.channel, thread.thread_ts, thread.user) == (
        payloads.DM,
        "1726133698.626339",
        payloads.USER,
    )


def test_a_thread_reply_also_sent_to_the_channel_is_still_a_question() -> None:
    body = payloads.app_mention("and the portal?", thread_ts="1700000000.000100")
    body["event"]["subtype"] = "thread_broadcast"

    intake = message_from_event(body, BOT)

    assert intake is not None
    assert intake.incoming.address.to_dict()["thread_ts"] == "1700000000.000100"


def test_an_address_reads_back_from_a_queued_job_as_older_versions_wrote_it() -> None:
    message = message_from_event(payloads.dm_message("hi", thread_ts="1700000000.000100"), BOT)
    command = command_from_form(dict(parse_qsl(payloads.slash_command("docs", response_url="https://h/1"))))
    assert message is not None and command is not None

    for address in (message.incoming.address, command.address):
        assert isinstance(address, SlackAddress)
        assert SlackAddress.from_dict(json.loads(json.dumps(address.to_dict()))) == address
    old = {**message.incoming.address.to_dict(), "title": "hi"}  # queued before titles moved out
    assert SlackAddress.from_dict(old) == message.incoming.address
    assert SlackHandle.from_dict({"channel": "D1", "ts": "1.2"}) == SlackHandle("D1", "1.2")
    assert SlackHandle.from_dict({}) is None
