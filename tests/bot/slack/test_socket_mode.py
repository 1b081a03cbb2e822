"""Socket Mode (SLACK_APP_TOKEN): events arrive over a websocket from the fake, acks go back on it."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from bot.core import text
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, VPN_GUIDE, HarnessFactory


async def test_socket_mode_acks_envelopes_answers_in_the_thread_and_drops_redeliveries(
    make_slack: HarnessFactory,
) -> None:
    slack = await make_slack(socket_mode=True)
    await slack.fake.socket_connected()
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    body = payloads.app_mention("How do I rotate the VPN certificate?")

    ack = await slack.fake.send_envelope(body)
    retry_ack = await slack.fake.send_envelope(body, retry_attempt=1)
    await slack.platform.drain()

    assert set(ack) == {"envelope_id"} and set(retry_ack) == {"envelope_id"}
    (placeholder,) = slack.posts()
    assert placeholder["thread_ts"] == body["event"]["ts"] and placeholder["text"] == text.THINKING
    (message,) = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])
    assert "Keychain" in message["text"]
    (opened,) = slack.fake.calls_to("apps.connections.open")
    assert opened.token == slack.fake.app_token  # the app-level token, not the bot token
    # No HTTP endpoint for events in Socket Mode: nothing unsigned can come in that way.
    assert (await slack.http.post("/slack/events", data=b"{}")).status == 404


async def test_socket_mode_slash_commands_are_acked_on_the_socket(make_slack: HarnessFactory) -> None:
    slack = await make_slack(socket_mode=True)
    await slack.fake.socket_connected()
    form = dict(parse_qsl(payloads.slash_command("help", response_url=slack.fake.response_url())))

    ack = await slack.fake.send_envelope(form, kind="slash_commands")
    await slack.platform.drain()

    assert "envelope_id" in ack
    (reply,) = slack.fake.responses
    assert reply["response_type"] == "ephemeral" and "threadwise" in json.dumps(reply)
