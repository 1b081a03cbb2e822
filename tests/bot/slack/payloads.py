"""Slack request bodies shaped exactly like the real ones in ../shared/fixtures/slack, and their signing.

Nothing is read from ../shared: the shapes (field names, nesting, envelope) follow the fixtures
`events/app_mention.json`, `events/message_im_*.json`, `events/message_file_share_channel.json`,
`interactivity/slash_command.form.txt`, `interactivity/block_actions.form.txt`; the values are ours.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from typing import Any
from urllib.parse import quote, unquote, urlencode

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T111"
BOT_USER = "W111"  # the bot, as the fake's auth.test says
BOT_ID = "B111"
USER = "W222"
CHANNEL = "C111"
DM = "D111"

_ts = itertools.count(1)


def new_ts() -> str:
    return f"{int(time.time())}.{next(_ts):06d}"


def new_event_id() -> str:
    return "Ev" + uuid.uuid4().hex[:10].upper()


def envelope(event: dict[str, Any], *, event_id: str | None = None, team: str = TEAM) -> dict[str, Any]:
    """The Events API wrapper, as in events/message_im_top_level.json."""
    return {
        "token": "verification_token",
        "team_id": team,
        "enterprise_id": "E111",
        "api_app_id": "A111",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": "E111",
                "team_id": team,
                "user_id": BOT_USER,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
    }


def app_mention(
    text: str,
    *,
    ts: str | None = None,
    thread_ts: str | None = None,
    channel: str = CHANNEL,
    user: str = USER,
    files: list[dict[str, Any]] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """events/app_mention.json: "<@W111> …" in a channel."""
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "app_mention",
        "text": f"<@{BOT_USER}> {text}",
        "user": user,
        "ts": ts,
        "team": TEAM,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = files
        event["upload"] = False
    return envelope(event, event_id=event_id)


def channel_message(
    text: str,
    *,
    ts: str | None = None,
    thread_ts: str | None = None,
    channel: str = CHANNEL,
    user: str = USER,
    event_id: str | None = None,
) -> dict[str, Any]:
    """events/message_channels.json (message.channels), optionally a reply in a thread."""
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts,
        "team": TEAM,
        "blocks": _rich_text(text),
        "channel": channel,
        "event_ts": ts,
        "channel_type": "channel",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    return envelope(event, event_id=event_id)


def dm_message(
    text: str,
    *,
    ts: str | None = None,
    thread_ts: str | None = None,
    user: str = USER,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """events/message_im_top_level.json, or message_im_thread.json with thread_ts."""
    ts = ts or new_ts()
    event: dict[str, Any] = {"user": user, "type": "message", "ts": ts, "text": text}
    if thread_ts:
        event.update(team=TEAM, user_team=TEAM, source_team=TEAM, user_profile={}, thread_ts=thread_ts)
        event["parent_user_id"] = user
    event.update(channel=DM, event_ts=ts, channel_type="im", **extra)
    return envelope(event, event_id=event_id)


def dm_file_share(
    files: list[dict[str, Any]], *, text: str = "", user: str = USER, event_id: str | None = None
) -> dict[str, Any]:
    """events/message_file_share_channel.json's shape, in the bot's DM (channel_type im)."""
    ts = new_ts()
    event = {
        "type": "message",
        "text": text,
        "files": files,
        "upload": False,
        "user": user,
        "display_as_bot": False,
        "ts": ts,
        "blocks": _rich_text(text) if text else [],
        "client_msg_id": str(uuid.uuid4()),
        "channel": DM,
        "subtype": "file_share",
        "event_ts": ts,
        "channel_type": "im",
    }
    return envelope(event, event_id=event_id)


def assistant_thread_started(*, thread_ts: str, user: str = USER) -> dict[str, Any]:
    return envelope(
        {
            "type": "assistant_thread_started",
            "assistant_thread": {
                "user_id": user,
                "context": {"channel_id": "C222", "team_id": TEAM, "enterprise_id": "E111"},
                "channel_id": DM,
                "thread_ts": thread_ts,
            },
            "event_ts": new_ts(),
        }
    )


def from_team(body: dict[str, Any], team: str, *, ext_shared: bool = True) -> dict[str, Any]:
    """The same event as sent by a member of another workspace: its `user_team` and `source_team`
    name theirs (events/message_im_thread.json's fields), and the envelope says whether the channel
    is shared with another organisation (`is_ext_shared_channel`, as in events/file_shared.json)."""
    body["event"].update(user_team=team, source_team=team, team=team)
    body["is_ext_shared_channel"] = ext_shared
    return body


def url_verification() -> dict[str, Any]:
    """events/url_verification.json."""
    return {
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }


def slash_command(text: str, *, response_url: str, channel: str = CHANNEL, user: str = USER) -> str:
    """interactivity/slash_command.form.txt: the raw form body, fields in Slack's order."""
    return urlencode(
        {
            "token": "verification_token",
            "team_id": TEAM,
            "team_domain": "test-domain",
            "channel_id": channel,
            "channel_name": "random",
            "user_id": user,
            "user_name": "primary-owner",
            "command": "/threadwise",
            "text": text,
            "enterprise_id": "E111",
            "enterprise_name": "Org Name",
            "response_url": response_url,
            "trigger_id": f"{int(time.time())}.111.{uuid.uuid4().hex[:8]}",
        }
    )


def block_actions(
    *, action_id: str, value: str, message: dict[str, Any], channel: str = CHANNEL, user: str = USER
) -> str:
    """interactivity/block_actions.form.txt: payload=<url-quoted JSON>, on a (non-ephemeral) message."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "primary-owner", "name": "primary-owner", "team_id": TEAM},
        "api_app_id": "A111",
        "token": "verification_token",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
            "thread_ts": message.get("thread_ts"),
        },
        "trigger_id": "111.222.valid",
        "team": {
            "id": TEAM,
            "domain": "workspace-domain",
            "enterprise_id": "E111",
            "enterprise_name": "Sandbox",
        },
        "channel": {"id": channel, "name": "test-channel"},
        "message": message,
        "response_url": "https://hooks.slack.com/actions/T111/111/random-value",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "threadwise_feedback",
                "text": {"type": "plain_text", "text": "👍", "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return "payload=" + quote(json.dumps(payload))


def feedback_click(
    *, value: str, message: dict[str, Any], channel: str = CHANNEL, user: str = USER, trigger_id: str = ""
) -> str:
    """A click on Slack's feedback_buttons: block_actions whose action is a `feedback_buttons` one.

    The action's fields follow bolt-js's `FeedbackButtonsAction` (type, action_id, block_id, action_ts,
    text, value: docs.slack.dev/tools/bolt-js/reference/interfaces/FeedbackButtonsAction); the envelope
    is block_actions' (interactivity/block_actions.form.txt). No captured body of this action exists in
    ../shared/fixtures: the envelope is the standard one, the action the documented one.
    """
    form = block_actions(
        action_id="threadwise_feedback_vote", value=value, message=message, channel=channel, user=user
    )
    payload = json.loads(unquote(form.removeprefix("payload=")))
    payload["trigger_id"] = trigger_id or f"{int(time.time())}.222.{uuid.uuid4().hex[:8]}"
    payload["actions"][0].update(
        type="feedback_buttons",
        text={"type": "plain_text", "text": "👎" if value.startswith("down") else "👍"},
    )
    return "payload=" + quote(json.dumps(payload))


def view_submission(
    *, view: dict[str, Any], values: dict[str, Any], user: str = USER, team: str = TEAM
) -> str:
    """The 👎 form submitted: view_submission as docs.slack.dev/reference/interaction-payloads/
    view-interactions-payload describes it (type, team, user, api_app_id, trigger_id, view with its
    `state.values` by block_id then action_id; the radio's `selected_option` per bolt-js
    RadioButtonsAction, the text input's `value` per api.slack.com/changelog/2020-09-full-state-on-
    view-submisson-and-block-actions). `view` is the one views.open was given."""
    payload = {
        "type": "view_submission",
        "team": {"id": team, "domain": "workspace-domain"},
        "user": {"id": user, "username": "primary-owner", "name": "primary-owner", "team_id": team},
        "api_app_id": "A111",
        "token": "verification_token",
        "trigger_id": f"{int(time.time())}.333.{uuid.uuid4().hex[:8]}",
        "view": {
            "id": "V0001",
            "team_id": team,
            "app_id": "A111",
            "bot_id": BOT_ID,
            "hash": "1700000000.abcdef",
            **view,
            "state": {"values": values},
        },
        "response_urls": [],
        "is_enterprise_install": False,
    }
    return "payload=" + quote(json.dumps(payload))


def reason_values(reason: str | None, comment: str | None = None) -> dict[str, Any]:
    """The form's state.values: the radio button chosen (None: none) and the words typed."""
    chosen = None if reason is None else {"text": {"type": "plain_text", "text": reason}, "value": reason}
    return {
        "reason": {"reason_choice": {"type": "radio_buttons", "selected_option": chosen}},
        "comment": {"comment_text": {"type": "plain_text_input", "value": comment}},
    }


def signed_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None, content_type: str
) -> dict[str, str]:
    """As Slack signs: v0=HMAC-SHA256(secret, "v0:{timestamp}:{raw body}")."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def _rich_text(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:3],
            "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
        }
    ]
