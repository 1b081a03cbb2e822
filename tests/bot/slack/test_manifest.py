"""deploy/slack/manifest.yml matches what the app does: every event it subscribes to is acked (an
unacked event is redelivered by Slack), and all three request URLs are the one route we serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.bot.slack import payloads
from tests.bot.slack.conftest import SlackHarness

MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "slack" / "manifest.yml"


def _manifest() -> dict[str, Any]:
    return dict(yaml.safe_load(MANIFEST.read_text()))


def test_the_manifest_routes_everything_to_slack_events_and_asks_only_for_used_scopes() -> None:
    manifest = _manifest()
    settings = manifest["settings"]
    (command,) = manifest["features"]["slash_commands"]

    urls = {
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        command["url"],
    }
    assert {u.split("/", 3)[-1] for u in urls} == {"slack/events"}
    assert command["command"] == "/threadwise"
    assert settings["interactivity"]["is_enabled"] is True
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == [
        "app_mentions:read",
        "assistant:write",
        "channels:history",
        "chat:write",
        "commands",
        "files:read",
        "groups:history",
        "im:history",
        "mpim:history",
        "team:read",  # team.info: is a Slack Connect sender's workspace in this Grid organisation?
    ]


async def test_every_subscribed_event_is_acked(slack: SlackHarness) -> None:
    events = _manifest()["settings"]["event_subscriptions"]["bot_events"]
    samples: dict[str, dict[str, Any]] = {
        "app_mention": payloads.app_mention("hi")["event"],
        "message.channels": payloads.channel_message("hi")["event"],
        "message.groups": {
            **payloads.channel_message("hi")["event"],
            "channel": "G111",
            "channel_type": "group",
        },
        "message.mpim": {
            **payloads.channel_message("hi")["event"],
            "channel": "G222",
            "channel_type": "mpim",
        },
        "message.im": payloads.dm_message("hi")["event"],
        "assistant_thread_started": payloads.assistant_thread_started(thread_ts=payloads.new_ts())["event"],
        "assistant_thread_context_changed": {
            **payloads.assistant_thread_started(thread_ts=payloads.new_ts())["event"],
            "type": "assistant_thread_context_changed",
        },
    }
    assert sorted(samples) == sorted(events)

    statuses = {name: (await slack.send(payloads.envelope(event))).status for name, event in samples.items()}
    await slack.settle()

    assert statuses == dict.fromkeys(samples, 200)
