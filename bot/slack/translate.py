"""Slack payloads → `Incoming` messages and small records: pure functions, no I/O, no SDK.

Each function takes a payload as Slack sends it (an Events API body, a slash command's form fields, a
`block_actions` payload) and returns what the core needs, or None when threadwise should not react.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from bot.core.feedback import COMMENT_LIMIT, REASONS
from bot.core.model import FileRef, Incoming
from bot.slack.address import SlackAddress, SlackHandle
from rag.scopes import WORKSPACE, channel_scope, private_scope

PLATFORM = "slack"
FEEDBACK_ACTION_PREFIX = "threadwise_feedback_"
FEEDBACK_UP = FEEDBACK_ACTION_PREFIX + "up"
FEEDBACK_DOWN = FEEDBACK_ACTION_PREFIX + "down"
FEEDBACK_VOTE = FEEDBACK_ACTION_PREFIX + "vote"  # Slack's feedback_buttons: the value is `<vote>:<ref>`
REASON_VIEW = "threadwise_feedback_reason"  # the 👎 form's callback_id
REASON_BLOCK, REASON_ACTION = "reason", "reason_choice"
COMMENT_BLOCK, COMMENT_ACTION = "comment", "comment_text"
SCOPE_ACTION_PREFIX = "threadwise_scope_"  # the buttons under a DM upload's reply: who may ask about it
SCOPE_WORKSPACE = SCOPE_ACTION_PREFIX + "workspace"
SCOPE_PRIVATE = SCOPE_ACTION_PREFIX + "private"
SCOPE_CHANNEL = SCOPE_ACTION_PREFIX + "channel"  # a conversations_select: its selected_conversation
REF_LIMIT = 255  # characters of an answer's ref read back from Slack (ours are job ids, far shorter)
# A user's own words: plain, with files, or a thread reply also sent to the channel. Edits, deletions,
# joins, bot posts… are not questions.
HANDLED_SUBTYPES = (None, "file_share", "thread_broadcast")
_COMMAND_PREFIX = "/threadwise"

_USER_REF = re.compile(r"<@([A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL_REF = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_CONVERSATION_ID = re.compile(r"[CG][A-Z0-9]{2,30}")
# "for #sales" with a file in the DM (only "for" then the channel: a channel merely named is not a choice)
_FOR_CHANNEL = re.compile(r"\bfor\s+<#([CG][A-Z0-9]+)(?:\|[^>]*)?>", re.IGNORECASE)
_SPECIAL_REF = re.compile(r"<!([a-z]+)(?:\^[^|>]*)?(?:\|([^>]*))?>")
_LINK_REF = re.compile(r"<([a-z][a-z0-9+.-]*:[^|>]+)(?:\|([^>]*))?>")


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is in its workspace (from `auth.test`, asked once at start)."""

    user_id: str
    bot_id: str
    team_id: str


@dataclass(frozen=True)
class Origin:
    """A sender the event places in another workspace than this one (`user_team`, `source_team`)."""

    teams: tuple[str, ...]  # the other workspaces (T…) or organisations (E…) the event names
    enterprise: str | None  # this workspace's Enterprise Grid organisation, if it is in one
    ext_shared: bool  # the channel is shared with another organisation (Slack Connect)


@dataclass(frozen=True)
class Message:
    """A message for the dispatcher. `origin`: set when the sender may belong to another
    organisation (checked before dispatching)."""

    incoming: Incoming
    origin: Origin | None = None

    @property
    def follow_up_only(self) -> bool:
        """Not addressed to the bot: answered only in a thread the bot is already in."""
        return not self.incoming.addressed


@dataclass(frozen=True)
class Feedback:
    vote: Literal["up", "down"]
    user: str
    team: str
    channel: str
    message_ts: str
    thread_ts: str
    event_id: str  # the answer's ref: the job's id, or (older buttons) the question's event id
    trigger_id: str = ""  # lets a 👎 open the form asking why, for 3 s


@dataclass(frozen=True)
class Reason:
    """The 👎 form, submitted: why the answer was not good, in the person's words too."""

    user: str
    team: str
    ref: str
    reason: str  # a key of REASONS
    comment: str


@dataclass(frozen=True)
class Refused:
    """A submitted 👎 form that is not read: why (for the log), and the form's field to say it under
    where the person can put it right."""

    problem: str
    block: str = ""


@dataclass(frozen=True)
class AssistantThread:
    team: str
    channel: str
    thread_ts: str
    user: str


def message_from_event(
    body: Mapping[str, Any], bot: BotIdentity, *, follow_ups: bool = True
) -> Message | None:
    """An `app_mention` or `message` event callback → a Message, or None to ignore it.

    Ignored: other bots and the bot itself, subtypes other than file_share (edits, deletions…), channel
    messages that neither mention the bot nor reply in a thread (only a thread it is in counts, which
    the dispatcher checks; none when `follow_ups` is off), and files in channels unless the message
    mentions the bot.
    """
    event = body.get("event") or {}
    if not _written_by_a_person(event, bot):
        return None
    raw = event.get("text") or ""
    direct = event.get("channel_type") == "im"
    mentioned = event.get("type") == "app_mention" or f"<@{bot.user_id}" in raw
    files = tuple(f for f in (file_ref(d) for d in event.get("files") or ()) if f is not None)
    if not (direct or mentioned) and (not (event.get("thread_ts") and follow_ups) or files):
        return None  # a channel message not for the bot (files shared among people stay theirs)
    if event.get("subtype") == "file_share" and not files:
        return None  # an upload whose files[] did not come along: nothing to read, no question asked
    text = plain_text(raw, bot_user_id=bot.user_id)
    if not text and not files and not mentioned:
        return None
    # The workspace the app is installed in, never the sender's (`event.team` is theirs in Slack Connect)
    team = str(body.get("team_id") or bot.team_id)
    incoming = _incoming(body, team, text, files, direct=direct, mentioned=mentioned)
    named = _FOR_CHANNEL.search(raw)
    if direct and files and named:  # "for #channel": the files are that channel's
        incoming = replace(incoming, scope=channel_scope(named.group(1)))
    return Message(incoming, origin=sender_origin(body, team))


def _written_by_a_person(event: Mapping[str, Any], bot: BotIdentity) -> bool:
    """A user's own words, in a message that says where it was written (not a bot's, not an edit)."""
    if event.get("type") not in ("app_mention", "message") or event.get("subtype") not in HANDLED_SUBTYPES:
        return False
    said = event.get("user") and event.get("channel") and event.get("ts")
    return bool(said) and not _from_a_bot(event, bot)


def _incoming(
    body: Mapping[str, Any],
    team: str,
    text: str,
    files: tuple[FileRef, ...],
    *,
    direct: bool,
    mentioned: bool,
) -> Incoming:
    event = body["event"]
    user, channel, ts = str(event["user"]), str(event["channel"]), str(event["ts"])
    in_thread = bool(event.get("thread_ts"))
    root = str(event.get("thread_ts") or ts)
    event_id = str(body.get("event_id") or f"{channel}-{ts}")
    # In a DM thread, an AI app's assistant thread shows a status.
    address = SlackAddress(
        team, channel, user, event_id, thread_ts=root, dm=direct, assistant=direct and in_thread
    )
    return Incoming(
        platform=PLATFORM,
        workspace=f"slack-{team}",
        user=user,
        text=text,
        event_id=event_id,
        is_direct=direct,
        thread=thread_key(team, channel, root),
        address=address,
        files=files,
        message_key=f"{team}:{channel}:{ts}",
        mentioned=mentioned,
        addressed=direct or mentioned,
        in_thread=in_thread,
        place=private_scope(user) if direct else channel_scope(channel),
    )


def sender_origin(body: Mapping[str, Any], team: str) -> Origin | None:
    """None when the event places its sender in this workspace `team` (or names no other one).

    Slack Connect events name the sender's own workspace in `user_team` (sometimes their Grid org,
    an E… id) and the posting workspace in `source_team`; `team` stands in when `user_team` is
    absent. A member of another workspace of this Grid org appears the same way, so the org
    (the envelope's `enterprise_id`) is passed on for the caller to compare.
    """
    event = body.get("event") or {}
    named = {event.get("user_team") or event.get("team"), event.get("source_team")}
    enterprise = _enterprise(body)
    others = sorted(str(t) for t in named if t and t not in (team, enterprise))
    if not others:
        return None
    return Origin(tuple(others), enterprise, body.get("is_ext_shared_channel") is True)


def _enterprise(body: Mapping[str, Any]) -> str | None:
    authorizations = body.get("authorizations") or [{}]
    found = body.get("enterprise_id") or authorizations[0].get("enterprise_id")
    return str(found) if found else None


def command_from_form(form: Mapping[str, Any]) -> Incoming | None:
    """A slash command (`/threadwise docs`) → an Incoming whose replies go to the response_url."""
    team, user, channel = form.get("team_id"), form.get("user_id"), form.get("channel_id")
    if not (team and user and channel):
        return None
    words = str(form.get("text") or "").strip()
    # Whatever the command is called in this workspace, its words are threadwise's commands.
    text = f"{_COMMAND_PREFIX} {words}".strip()
    ref = str(form.get("trigger_id") or f"{channel}-{user}")
    return Incoming(
        platform=PLATFORM,
        workspace=f"slack-{team}",
        user=str(user),
        text=text,
        event_id=ref,
        is_direct=str(channel).startswith("D"),
        thread=thread_key(str(team), str(channel), "command"),
        address=SlackAddress(
            team=str(team),
            channel=str(channel),
            user=str(user),
            event_id=ref,
            dm=str(channel).startswith("D"),
            response_url=str(form.get("response_url") or ""),
        ),
        place=private_scope(str(user)) if str(channel).startswith("D") else channel_scope(str(channel)),
    )


def feedback_from_action(body: Mapping[str, Any]) -> Feedback | None:
    """A click on 👍/👎 under an answer, or None for any other action (or a value that is not ours)."""
    actions = body.get("actions") or []
    ours = (a for a in actions if str(a.get("action_id", "")).startswith(FEEDBACK_ACTION_PREFIX))
    action = next(ours, None)
    if action is None:
        return None
    voted = _vote_of(str(action["action_id"]), str(action.get("value") or ""))
    user = body.get("user") or {}
    if voted is None or not user.get("id"):
        return None
    container = body.get("container") or {}
    message = body.get("message") or {}
    message_ts = str(message.get("ts") or container.get("message_ts") or "")
    return Feedback(
        vote=voted[0],
        user=str(user.get("id", "")),
        team=str((body.get("team") or {}).get("id") or user.get("team_id") or ""),
        channel=str((body.get("channel") or {}).get("id") or container.get("channel_id") or ""),
        message_ts=message_ts,
        thread_ts=str(message.get("thread_ts") or container.get("thread_ts") or message_ts),
        event_id=voted[1],
        trigger_id=str(body.get("trigger_id") or ""),
    )


def choice_from_action(body: Mapping[str, Any]) -> Incoming | None:
    """A click on the buttons under a DM upload's reply (or a channel picked there) → an Incoming
    that chooses who may ask about its documents, or None for any other action."""
    actions = body.get("actions") or []
    action = next((a for a in actions if str(a.get("action_id", "")).startswith(SCOPE_ACTION_PREFIX)), None)
    user = str((body.get("user") or {}).get("id") or "")
    container = body.get("container") or {}
    channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
    message = body.get("message") or {}
    message_ts = str(message.get("ts") or container.get("message_ts") or "")
    team = str((body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id") or "")
    if action is None or not (user and channel and message_ts and team):
        return None
    key = str(action.get("block_id") or "").removeprefix(SCOPE_ACTION_PREFIX)
    scope = _chosen_scope(action, user)
    if not key or len(key) > REF_LIMIT or not scope:
        return None
    root = str(message.get("thread_ts") or container.get("thread_ts") or message_ts)
    click = str(action.get("action_ts") or body.get("trigger_id") or message_ts)
    return Incoming(
        platform=PLATFORM,
        workspace=f"slack-{team}",
        user=user,
        text="",
        event_id=f"{channel}-{click}",
        is_direct=channel.startswith("D"),
        thread=thread_key(team, channel, root),
        address=SlackAddress(team, channel, user, key, thread_ts=root, dm=channel.startswith("D")),
        place=private_scope(user) if channel.startswith("D") else channel_scope(channel),
        scope=scope,
        choice=key,
        handle=SlackHandle(channel, message_ts),
    )


def _chosen_scope(action: Mapping[str, Any], user: str) -> str:
    action_id = str(action.get("action_id"))
    if action_id == SCOPE_WORKSPACE:
        return WORKSPACE
    if action_id == SCOPE_PRIVATE:
        return private_scope(user)
    picked = str(action.get("selected_conversation") or action.get("selected_channel") or "")
    return channel_scope(picked) if action_id == SCOPE_CHANNEL and _CONVERSATION_ID.fullmatch(picked) else ""


def _vote_of(action_id: str, value: str) -> tuple[Literal["up", "down"], str] | None:
    """Slack's feedback_buttons say `up:<ref>` / `down:<ref>`; older buttons say the vote in their
    action_id and hold the question's event id."""
    if action_id == FEEDBACK_VOTE:
        vote, _, ref = value.partition(":")
    elif action_id in (FEEDBACK_UP, FEEDBACK_DOWN):
        vote, ref = action_id.removeprefix(FEEDBACK_ACTION_PREFIX), value
    else:
        return None
    if vote not in ("up", "down") or not ref or len(ref) > REF_LIMIT:
        return None
    return ("up" if vote == "up" else "down"), ref


def reason_metadata(feedback: Feedback) -> str:
    """What the 👎 form carries back in its private_metadata: the answer voted on."""
    return json.dumps({"ref": feedback.event_id})


def reason_from_view(body: Mapping[str, Any]) -> Reason | Refused:
    """A submitted 👎 form → its Reason, or why not: Slack's own submissions carry the ref we gave
    the form and a reason (the choice is required); anything else was forged or damaged."""
    view, user = body.get("view") or {}, body.get("user") or {}
    team = str((body.get("team") or {}).get("id") or user.get("team_id") or "")
    ref = _metadata_ref(view.get("private_metadata"))
    if not (ref and user.get("id") and team):
        return Refused("no answer, person or workspace named")
    values = (view.get("state") or {}).get("values") or {}
    chosen = _state(values, REASON_BLOCK, REASON_ACTION).get("selected_option") or {}
    reason = chosen.get("value") if isinstance(chosen, dict) else None
    if reason not in REASONS:
        return Refused("no reason chosen", block=REASON_BLOCK)
    comment = _state(values, COMMENT_BLOCK, COMMENT_ACTION).get("value")
    words = comment.strip()[:COMMENT_LIMIT] if isinstance(comment, str) else ""
    return Reason(str(user["id"]), team, ref, str(reason), words)


def _metadata_ref(raw: object) -> str:
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return ""
    ref = data.get("ref") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) and 0 < len(ref) <= REF_LIMIT else ""


def _state(values: object, block: str, action: str) -> dict[str, Any]:
    """One input's state in a view's `state.values`, or {} where the shape is not Slack's."""
    found = values.get(block) if isinstance(values, dict) else None
    found = found.get(action) if isinstance(found, dict) else None
    return found if isinstance(found, dict) else {}


def assistant_thread_from_event(body: Mapping[str, Any]) -> AssistantThread | None:
    """`assistant_thread_started`: someone opened a thread with the bot in Slack's AI app view."""
    event = body.get("event") or {}
    thread = event.get("assistant_thread") or {}
    channel, ts, user = thread.get("channel_id"), thread.get("thread_ts"), thread.get("user_id")
    if event.get("type") != "assistant_thread_started" or not (channel and ts):
        return None
    team = str(body.get("team_id") or (thread.get("context") or {}).get("team_id") or "")
    return AssistantThread(team=team, channel=channel, thread_ts=ts, user=str(user or ""))


def file_ref(data: Mapping[str, Any]) -> FileRef | None:
    """A `files[]` entry. Slack Connect files come as a bare id (`"file_access": "check_file_info"`):
    their name and URLs are empty here, and the adapter looks them up with files.info."""
    file_id, name = data.get("id"), data.get("name") or data.get("title") or ""
    if not file_id or data.get("mode") == "tombstone":
        return None
    size = data.get("size")
    return FileRef(
        name=str(name),
        size=int(size) if isinstance(size, int) else None,
        url=str(data.get("url_private_download") or data.get("url_private") or ""),
        mimetype=str(data.get("mimetype") or ""),
        id=str(file_id),
        permalink=data.get("permalink") or None,
    )


def thread_key(team: str, channel: str, root_ts: str) -> str:
    return f"slack:{team}:{channel}:{root_ts}"


def plain_text(text: str, *, bot_user_id: str) -> str:
    """Slack's message markup → the plain question: no bot mention, readable links and names."""
    text = _USER_REF.sub(lambda m: "" if m.group(1) == bot_user_id else f"@{m.group(2) or m.group(1)}", text)
    text = _CHANNEL_REF.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _SPECIAL_REF.sub(lambda m: f"@{m.group(2) or m.group(1)}", text)
    text = _LINK_REF.sub(lambda m: m.group(2) or m.group(1).removeprefix("mailto:"), text)
    text = html.unescape(text)  # Slack escapes &, < and > as entities
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _from_a_bot(event: Mapping[str, Any], bot: BotIdentity) -> bool:
    return bool(
        event.get("bot_id")
        or event.get("subtype") == "bot_message"
        or event.get("user") == bot.user_id
        or (event.get("bot_profile") is not None)
    )
