"""Teams activities (the JSON Bot Framework posts to /api/messages) → what the bot should do.

Pure functions over the raw activity dict, not botbuilder's `Activity`: its model drops the fields this
needs (a mention entity's `mentioned` and `text`, `conversation.tenantId`). See
../shared/fixtures/teams/PROTOCOL_NOTES.md for the shapes.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

from yarl import URL

from bot.core.feedback import COMMENT_LIMIT
from bot.core.model import FileRef, Incoming
from bot.teams import text as teams_text
from bot.teams.address import TeamsAddress, TeamsHandle
from bot.teams.places import Place
from rag.scopes import WORKSPACE, channel_scope, private_scope

PLATFORM = "teams"
FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
# A file posted in a team channel or group chat: a link to where it is stored, read through Graph.
REFERENCE = "reference"
# FileRef.id of such a file: "graph:<the tenant it was posted in>?<its Place, urlencoded>"
GRAPH_FILE = "graph:"
# Teams mirrors every message's text as an HTML attachment, and cards travel as attachments: not files.
_NOT_FILES = ("text/html", "application/vnd.microsoft.card.")
FEEDBACK_VERB = "threadwise.feedback"
SUBMIT_ACTION = "message/submitAction"  # Teams' feedback loop: 👍/👎 under an answer, and the form's text
SCOPE_VERB = "threadwise.scope"  # the card under a personal-chat upload: who may ask about it
SCOPE_CHOICES = ("workspace", "private")  # what its buttons say; "private" is the clicker's own scope
_UPLOAD_KEY = re.compile(r"[\w:;@.=+/-]{1,200}")  # a ScopeOffer.key: the upload's job id (event_id)
_REACTIONS: dict[str, Vote] = {"like": "up", "dislike": "down"}
_MESSAGE_ID = re.compile(r"[\w:;@.=+/-]{1,128}")  # Teams' activity ids: digits, or `1:…`, `f:…`
_MAX_FEEDBACK_JSON = 16 * 1024

ConversationKind = Literal["personal", "channel", "groupChat"]
Vote = Literal["up", "down"]
Activity = Mapping[str, Any]


@dataclass(frozen=True)
class Message:
    """A user message for the dispatcher."""

    incoming: Incoming
    kind: ConversationKind

    @property
    def addressed(self) -> bool:
        """The bot was mentioned, or it is a personal chat."""
        return self.incoming.addressed


@dataclass(frozen=True)
class Notice:
    """A message the adapter answers by itself (an attachment it cannot read), in the thread."""

    text: str
    address: TeamsAddress


@dataclass(frozen=True)
class BotAdded:
    """The bot joined a team, a group chat or someone's personal scope: say hello there."""

    address: TeamsAddress


@dataclass(frozen=True)
class Feedback:
    """👍/👎 on an answer: Teams' feedback loop (`loop`), or our card's buttons (an invoke, or a
    message-back from older clients)."""

    vote: Vote
    ref: str  # the answer: the card's Reply.ref (older cards: the question's id), or the loop's message id
    workspace: str
    user: str
    invoke: bool  # an invoke needs the HTTP response to carry the reply
    comment: str = ""  # what the person typed in Teams' feedback form
    loop: bool = False  # Teams' feedback loop: answered with an empty 200


@dataclass(frozen=True)
class Choice:
    """A click on the card under a personal-chat upload: who may ask about its documents. The
    dispatcher runs it as a job, whose reply replaces the card; the invoke is answered at once."""

    incoming: Incoming


@dataclass(frozen=True)
class Rejected:
    """An invoke of a kind the bot handles whose contents it cannot accept: answered 400, nothing done."""

    reason: str


Event = Message | Notice | BotAdded | Feedback | Choice | Rejected


def translate(activity: Activity) -> Event | None:
    """What an incoming activity asks of the bot; None for activities it ignores."""
    kind = activity.get("type")
    if kind == "message":
        feedback = _feedback(activity, _dict(activity.get("value")), invoke=False)
        return feedback or _message(activity)
    if kind == "invoke" and activity.get("name") == "adaptiveCard/action":
        action = _dict(_dict(activity.get("value")).get("action"))
        data = _dict(action.get("data"))
        if action.get("verb") == SCOPE_VERB or data.get("threadwise") == "scope":
            return scope_choice(activity, data)
        return _feedback(activity, data, invoke=True)
    if kind == "invoke" and activity.get("name") == SUBMIT_ACTION:
        return feedback_loop(activity)
    if kind == "conversationUpdate" and bot_was_added(activity):
        return BotAdded(address_of(activity, reply=False))
    return None


# -- messages -----------------------------------------------------------------------------------


def _message(activity: Activity) -> Message | Notice | None:
    kind = conversation_kind(activity)
    question = question_text(activity)
    mentioned = mentions_bot(activity)
    attachments = [_dict(a) for a in activity.get("attachments") or ()]
    # Outside personal chat a file is read only when the message names the bot (like Slack's).
    readable = {FILE_DOWNLOAD_INFO, REFERENCE} if kind != "personal" and mentioned else {FILE_DOWNLOAD_INFO}
    files = tuple(_file_ref(a, activity) for a in attachments if a.get("contentType") in readable)
    others = [a for a in attachments if a.get("contentType") not in readable and not _is_echo(a)]
    addressed = kind == "personal" or mentioned
    if not files and not question and others:
        if not addressed:
            return None
        images = all(str(a.get("contentType", "")).startswith("image/") for a in others)
        notice = teams_text.INLINE_IMAGE if images else teams_text.ATTACHMENT_UNSUPPORTED
        return Notice(notice, address_of(activity))
    incoming = Incoming(
        platform=PLATFORM,
        workspace=workspace_of(activity),
        user=user_of(activity),
        text=question,
        event_id=event_id(activity),
        is_direct=kind == "personal",
        thread=thread_of(activity),
        address=address_of(activity),
        files=files,
        mentioned=mentioned,  # a file in a channel or group chat is meant for the bot
        addressed=addressed,
        in_thread=kind == "channel",  # a group chat is one conversation, not threads
        place=place_of(activity, kind),
    )
    return Message(incoming, kind)


def _is_echo(attachment: Mapping[str, Any]) -> bool:
    return str(attachment.get("contentType", "")).startswith(_NOT_FILES)


def _file_ref(attachment: Mapping[str, Any], activity: Activity) -> FileRef:
    name = str(attachment.get("name") or "file")
    if attachment.get("contentType") == REFERENCE:
        return shared_file(
            name, attachment.get("contentUrl"), tenant=tenant_of(activity), place=_place(activity)
        )
    content = _dict(attachment.get("content"))
    return FileRef(
        name=name,
        size=None,  # Teams does not say; the fetcher enforces the limit while downloading
        url=str(content.get("downloadUrl") or ""),
        mimetype=str(content.get("fileType") or ""),
        id=str(content.get("uniqueId") or ""),
        permalink=attachment.get("contentUrl") or None,  # the SharePoint path: a link for citations
    )


def shared_file(name: str, link: object, *, tenant: str, place: Place | None = None) -> FileRef:
    """A file posted in a team channel or group chat: `url` is its SharePoint (or OneDrive) link, which
    Graph reads with a token from the tenant it was posted in (`id`: a multi-tenant app is consented,
    and gets its tokens, per organisation), once the link is found inside `place`'s own files (also in
    `id`; bot/teams/places.py). No link: the fetcher says Teams did not give one."""
    url = link if isinstance(link, str) else ""
    # The tenant is quoted: whatever it holds, a `?` in it cannot end it early.
    where = f"?{place.encode()}" if place is not None else ""
    ref = f"{GRAPH_FILE}{quote(tenant, safe='')}{where}"
    return FileRef(name=name, size=None, url=url, id=ref, permalink=_citable(url))


def graph_tenant(file: FileRef) -> str | None:
    """The tenant of a file to be read through Graph (see `shared_file`); None for any other file."""
    if not file.id.startswith(GRAPH_FILE):
        return None
    return unquote(file.id.removeprefix(GRAPH_FILE).split("?", 1)[0])


def graph_place(file: FileRef) -> Place | None:
    """Where a file to be read through Graph was posted (see `shared_file`); None if not recorded."""
    if not file.id.startswith(GRAPH_FILE) or "?" not in file.id:
        return None
    return Place.decode(file.id.split("?", 1)[1])


def _place(activity: Activity) -> Place:
    """The channel (its team) or the group chat's sender, for the check that a file is the place's own.
    The channel is the conversation's, the one whose scope the file gets (as `place_of`)."""
    if conversation_kind(activity) == "groupChat":
        return Place(kind="chat", user=str(_dict(activity.get("from")).get("aadObjectId") or ""))
    team = _dict(_dict(activity.get("channelData")).get("team"))
    return Place(
        kind="channel",
        team=str(team.get("id") or ""),
        group=str(team.get("aadGroupId") or ""),
        channel=str(_dict(activity.get("conversation")).get("id") or "").split(";messageid=", 1)[0],
        service_url=str(activity.get("serviceUrl") or ""),
    )


def _citable(link: str) -> str | None:
    """The link as a citation can hold it: SharePoint's has spaces ("Shared Documents"), which would
    end a Markdown link; percent-encoded, it opens the same file."""
    try:
        return str(URL(link)) if link.startswith("https://") else None
    except ValueError:
        return None


def question_text(activity: Activity) -> str:
    """The message text without the bot's @mention; other people's mentions keep their names."""
    raw = str(activity.get("text") or "")
    for entity in _bot_mentions(activity):
        if entity.get("text"):
            raw = raw.replace(str(entity["text"]), " ")
        name = str(_dict(entity.get("mentioned")).get("name") or "")
        if name:  # the entity's text and the message's can differ in case or an "@"
            raw = re.sub(rf"<at>\s*@?{re.escape(name)}\s*</at>", " ", raw, flags=re.I)
    raw = re.sub(r"<at>(.*?)</at>", r"\1", raw, flags=re.S)
    return " ".join(html.unescape(raw).split())


def mentions_bot(activity: Activity) -> bool:
    """Whether the bot is @mentioned, from the `entities` (the text alone can't tell who <at>X</at> is)."""
    return bool(_bot_mentions(activity))


def _bot_mentions(activity: Activity) -> list[Mapping[str, Any]]:
    bot = _bare_id(str(_dict(activity.get("recipient")).get("id") or ""))
    found = []
    for entity in activity.get("entities") or ():
        entity = _dict(entity)
        mentioned = _bare_id(str(_dict(entity.get("mentioned")).get("id") or ""))
        if entity.get("type") == "mention" and bot and mentioned == bot:
            found.append(entity)
    return found


def _bare_id(account_id: str) -> str:
    """Bot ids come as `28:<app id>`; some clients mention the bare app id."""
    return account_id.removeprefix("28:")


# -- where the message came from ----------------------------------------------------------------


def conversation_kind(activity: Activity) -> ConversationKind:
    conversation = _dict(activity.get("conversation"))
    declared = conversation.get("conversationType")
    if declared in ("personal", "channel", "groupChat"):
        return declared
    # Old payloads (2017) have no conversationType: thread ids are group conversations.
    cid = str(conversation.get("id") or "")
    if ";messageid=" in cid:
        return "channel"
    if conversation.get("isGroup") or "@thread" in cid:
        return "groupChat"
    return "personal"


def tenant_of(activity: Activity) -> str:
    tenant = _dict(_dict(activity.get("channelData")).get("tenant")).get("id")
    return str(tenant or _dict(activity.get("conversation")).get("tenantId") or "")


def workspace_of(activity: Activity) -> str:
    """`teams-<tenant id>`; the Bot Framework Emulator sends no tenant, so it is `teams-local`."""
    return f"teams-{tenant_of(activity) or 'local'}"


def user_of(activity: Activity) -> str:
    """The Entra (AAD) object id when Teams sends it: stable across bots, and what admins can look up."""
    sender = _dict(activity.get("from"))
    return str(sender.get("aadObjectId") or sender.get("id") or "")


def conversation_id(activity: Activity) -> str:
    """The conversation to reply into. In a channel it names the thread (`;messageid=<root>`).

    A mention in a new channel post may arrive without `;messageid=`: the post is then the thread's root,
    so the reply goes under it, never to the channel itself.
    """
    cid = str(_dict(activity.get("conversation")).get("id") or "")
    is_post = activity.get("type") == "message" and activity.get("id")
    if is_post and conversation_kind(activity) == "channel" and ";messageid=" not in cid:
        cid = f"{cid};messageid={activity['id']}"
    return cid


def place_of(activity: Activity, kind: ConversationKind) -> str:
    """The scope of where it was said: the user's own in a personal chat, else the conversation's
    (a channel's threads are the channel: its id without `;messageid=`)."""
    if kind == "personal":
        return private_scope(user_of(activity))
    cid = str(_dict(activity.get("conversation")).get("id") or "")
    return channel_scope(cid.split(";messageid=", 1)[0])


def thread_of(activity: Activity) -> str:
    return f"{PLATFORM}:{conversation_id(activity)}"


def event_id(activity: Activity) -> str:
    """Unique per user message. Activity ids are only unique within a conversation, hence the suffix."""
    conversation = str(_dict(activity.get("conversation")).get("id") or "")
    digest = hashlib.sha256(conversation.encode()).hexdigest()[:10]
    return f"{activity.get('id') or ''}.{digest}"


def conversation_reference(activity: Activity, *, reply: bool = True) -> dict[str, Any]:
    """The ConversationReference as botbuilder serialises it: plain JSON, so a job can carry it anywhere."""
    conversation = dict(_dict(activity.get("conversation")))
    conversation["id"] = conversation_id(activity)
    reference: dict[str, Any] = {
        "user": dict(_dict(activity.get("from"))),
        "bot": dict(_dict(activity.get("recipient"))),
        "conversation": conversation,
        "channelId": activity.get("channelId"),
        "locale": activity.get("locale"),
        "serviceUrl": activity.get("serviceUrl"),
    }
    if reply and activity.get("id"):
        reference["activityId"] = activity["id"]
    return {k: v for k, v in reference.items() if v is not None}


def address_of(activity: Activity, *, reply: bool = True) -> TeamsAddress:
    """Where replies go: the reference, and the activity they answer (None: a new message)."""
    reply_to = activity.get("id") if reply else None
    return TeamsAddress(conversation_reference(activity, reply=reply), str(reply_to) if reply_to else None)


def bot_was_added(activity: Activity) -> bool:
    bot = _bare_id(str(_dict(activity.get("recipient")).get("id") or ""))
    added = {_bare_id(str(_dict(m).get("id") or "")) for m in activity.get("membersAdded") or ()}
    return bool(bot) and bot in added


# -- who may ask about an upload ----------------------------------------------------------------


def scope_data(key: str, choice: str) -> dict[str, str]:
    """What a button of the card under a personal-chat upload sends back (see `scope_choice`)."""
    return {"threadwise": "scope", "upload": key, "choice": choice}


def scope_choice(activity: Activity, data: Mapping[str, Any]) -> Choice | Rejected:
    """An `adaptiveCard/action` invoke from that card, every field checked: anyone may post one.

    Only the upload's key and `workspace` / `private` are read from the data; "private" is the
    clicker's own scope (as `place_of` names it), never a user the data names. Whether the clicker
    may choose for that upload is the job's call (bot/core/handlers.py). `replyToId` is the message
    that holds the card, which the job's reply replaces.
    """
    problem = _choice_problem(activity, data)
    if problem:
        return Rejected(problem)
    place = place_of(activity, "personal")
    card = str(activity["replyToId"])
    incoming = Incoming(
        platform=PLATFORM,
        workspace=workspace_of(activity),
        user=user_of(activity),
        text="",
        event_id=event_id(activity),
        is_direct=True,
        thread=thread_of(activity),
        # New messages (a refusal) go under the card; its own edits name it by the handle.
        address=TeamsAddress(conversation_reference(activity, reply=False), card),
        place=place,
        scope=WORKSPACE if data["choice"] == "workspace" else place,
        choice=str(data["upload"]),
        handle=TeamsHandle(activity_id=card),
    )
    return Choice(incoming)


def _choice_problem(activity: Activity, data: Mapping[str, Any]) -> str:
    """Why a scope choice cannot be taken ("" if it can)."""
    key, card, click = data.get("upload"), activity.get("replyToId"), activity.get("id")
    checks = (
        (isinstance(key, str) and _UPLOAD_KEY.fullmatch(key), "data.upload is not an upload's key"),
        (data.get("choice") in SCOPE_CHOICES, "data.choice is neither workspace nor private"),
        (isinstance(card, str) and _MESSAGE_ID.fullmatch(card), "no valid replyToId: which card was clicked"),
        (conversation_kind(activity) == "personal", "scope choices are made in personal chat"),
        # The click's id becomes the job's id and its redelivery key: Teams' own shape only.
        (isinstance(click, str) and _MESSAGE_ID.fullmatch(click), "no valid activity id"),
        (user_of(activity), "no user"),
    )
    return next((reason for ok, reason in checks if not ok), "")


# -- feedback -----------------------------------------------------------------------------------


def feedback_data(vote: Vote, ref: str) -> dict[str, str]:
    """What the card's 👍/👎 buttons send back (see `_feedback`)."""
    return {"threadwise": "feedback", "vote": vote, "ref": ref}


def _feedback(activity: Activity, data: Mapping[str, Any], *, invoke: bool) -> Feedback | None:
    vote = data.get("vote")
    if data.get("threadwise") != "feedback" or vote not in ("up", "down"):
        return None
    return Feedback(
        vote=vote,
        ref=str(data.get("ref") or "")[:100],
        workspace=workspace_of(activity),
        user=user_of(activity),
        invoke=invoke,
    )


def feedback_loop(activity: Activity) -> Feedback | Rejected:
    """A `message/submitAction` invoke from Teams' feedback loop, every field checked: anyone may post
    one, and what is read here is recorded.

    `value`: `{"actionName": "feedback", "actionValue": {"reaction": "like" | "dislike", "feedback":
    "<JSON: {\"feedbackText\": \"…\"}>"}}`; `replyToId` is the answer's message id (docs: "Enhance
    AI-generated bot messages", Handle feedback).
    """
    value = _dict(activity.get("value"))
    action = _dict(value.get("actionValue"))
    vote = _REACTIONS.get(str(action.get("reaction")))
    ref = activity.get("replyToId")
    if value.get("actionName") != "feedback" or vote is None:
        return Rejected("not a feedback reaction (actionName feedback, reaction like or dislike)")
    if not isinstance(ref, str) or not _MESSAGE_ID.fullmatch(ref):
        return Rejected("no valid replyToId: which answer is rated")
    comment = _feedback_text(action.get("feedback"))
    if comment is None:
        return Rejected("actionValue.feedback is not a JSON object with a feedbackText string")
    user, workspace = user_of(activity), workspace_of(activity)
    if not user:
        return Rejected("no user")
    return Feedback(vote, ref, workspace, user, invoke=True, comment=comment, loop=True)


def _feedback_text(raw: object) -> str | None:
    """The text typed in the feedback form ("" if none); None if `raw` is not what Teams sends."""
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str) or len(raw) > _MAX_FEEDBACK_JSON:
        return None
    try:
        form = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    typed = form.get("feedbackText", "") if isinstance(form, dict) else None
    if not isinstance(typed, str):
        return None
    return " ".join(typed.split())[:COMMENT_LIMIT]


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
