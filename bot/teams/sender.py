"""Replies to Teams through the Bot Connector, as Teams shows an AI answer natively.

- Personal chat: Teams' streaming protocol. `begin` sends the informative update ("Searching your
  documents…"), each `update` the answer so far, `finish` the final message; the stream's id and
  sequence travel in the handle (bot/teams/address.py). If Teams will not stream (or stops: the user
  pressed stop, the two-minute limit), the answer comes as one ordinary message.
- Group chats and channels (Teams streams in personal chats only): typing, then the answer.
- Either way the answer carries Teams' own citations, the AI label (`Reply.generated`) and the feedback
  loop (`Reply.feedback`) — bot/teams/native.py.
- Other clients (the Bot Framework Emulator): typing, a message edited in place as the answer streams,
  and the sources and 👍/👎 in an Adaptive Card.
- An upload's reply in personal chat carries the card that chooses who may ask about it
  (`Reply.offer`, everywhere); a click's reply replaces the message that holds the card.

Every call goes through `continue_conversation` on the ConversationReference the job carries, so the
same code replies from the process that took the message or from a worker elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog
from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes, Attachment, ConversationReference, Entity
from msrest.exceptions import HttpOperationError

from bot.core import text
from bot.core.model import Address, Handle, PartialAnswer, Reply, Update, Working
from bot.teams.address import TeamsAddress, TeamsHandle, teams_address, teams_handle
from bot.teams.native import FEEDBACK_LOOP, StreamInfo, ai_message
from bot.teams.render import MAX_MESSAGE_CHARS, scope_card, sources_card, split_message, teams_markdown
from bot.teams.translate import conversation_kind

log = structlog.get_logger(__name__)

Logic = Callable[[TurnContext], Awaitable[None]]
CURSOR = "▌"  # after an answer still streaming in (the Emulator)
NATIVE_CHANNEL = "msteams"
STREAM_GAP_S = 0.95  # Teams takes about one stream update a second; the core paces at 1 s, less jitter
STREAM_LIMIT_S = 100.0  # Teams ends a stream after 2 minutes: close it well before
INFORMATIVE = text.THINKING.strip("_")  # Teams shows it as plain text in its progress bar


class TeamsSender:
    """ReplySender for Teams (see the module docstring)."""

    def __init__(
        self,
        adapter: CloudAdapter,
        *,
        app_id: str | None,
        max_chars: int = MAX_MESSAGE_CHARS,
        clock: Callable[[], float] = time.time,
    ):
        self._adapter = adapter
        self._app_id = app_id or None
        self._max_chars = max_chars
        self._clock = clock  # wall-clock: a handle's times are read by whichever process runs the job

    # -- the port ------------------------------------------------------------------------------------

    async def begin(self, address: Address, working: Working) -> TeamsHandle | None:
        where = teams_address(address)
        if working.kind == "ask" and _streams(where):
            return await self._open_stream(where)
        # Teams shows "typing…" until the next message or ~3 s; updates renew it.
        await self._send(where, [_typing()])
        return None

    async def update(self, address: Address, handle: Handle | None, update: Update) -> TeamsHandle | None:
        where, shown = teams_address(address), teams_handle(handle)
        if isinstance(update, PartialAnswer):
            if shown is not None and shown.stream_id:
                return await self._stream(where, shown, update.text)
            if _native(where):  # no stream here: Teams keeps the answer for the final message
                await self._send(where, [_typing()])
                return shown
            body = update.text + " " + CURSOR
        else:
            body = text.ingest_progress(update.name, update.done, update.total)
        activity = _message(teams_markdown(body)[: self._max_chars])
        return await self._write(where, shown, [activity])

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> str | None:
        """Returns the id of the message Teams' feedback invokes will name (replyToId)."""
        where, shown = teams_address(address), teams_handle(handle)
        parts = [_message(part) for part in split_message(teams_markdown(reply.text), self._max_chars)]
        if reply.offer is not None:
            _attach(parts[-1], scope_card(reply.offer))
        if not _native(where):
            return await self._finish_with_card(where, shown, parts, reply)
        _decorate(parts, reply)
        if shown is not None and shown.streaming:
            return await self._finish_stream(where, shown, parts)
        if shown is not None and shown.state == "closed":
            shown = TeamsHandle(activity_id=shown.stream_id)  # the answer replaces the closed stream
        return await self._write_all(where, shown, parts)

    # -- Teams streaming -------------------------------------------------------------------------------

    async def _open_stream(self, where: TeamsAddress) -> TeamsHandle:
        now = self._clock()
        informative = _typing(INFORMATIVE, StreamInfo("informative", sequence=1))
        try:
            (stream_id,) = await self._send(where, [informative])
        except HttpOperationError as exc:
            if not _refused(exc):
                raise
            _log_refusal(exc, "begin")
            await self._send(where, [_typing()])
            return TeamsHandle(state="refused")
        return TeamsHandle(stream_id=stream_id, sequence=1, started=now, sent=now, state="open")

    async def _stream(self, where: TeamsAddress, shown: TeamsHandle, so_far: str) -> TeamsHandle:
        now = self._clock()
        body = teams_markdown(so_far)[: self._max_chars].strip()
        if not shown.streaming or not body:
            return shown
        if now - shown.started >= STREAM_LIMIT_S:
            return await self._close_stream(where, shown, body)
        if shown.sequence > 1 and now - shown.sent < STREAM_GAP_S:
            return shown  # too soon after the last chunk: the next update carries this text too
        sequence = shown.sequence + 1
        chunk = _typing(body, StreamInfo("streaming", stream_id=shown.stream_id, sequence=sequence))
        try:
            await self._send(where, [chunk])
        except HttpOperationError as exc:
            if _status(exc) == 429:  # throttled: skip this chunk
                return shown
            if not _refused(exc):
                raise
            _log_refusal(exc, "update")
            return replace(shown, state="refused")
        return replace(shown, sequence=sequence, sent=now)

    async def _close_stream(self, where: TeamsAddress, shown: TeamsHandle, body: str) -> TeamsHandle:
        """End a stream near Teams' time limit with the text so far; the answer will replace it."""
        final = _message(body)
        final.entities = [StreamInfo("final", stream_id=shown.stream_id)]
        try:
            await self._send(where, [final])
        except HttpOperationError as exc:
            if not _refused(exc):
                raise
            _log_refusal(exc, "close")
            return replace(shown, state="refused")
        log.info("teams_stream_closed_early", seconds=round(self._clock() - shown.started, 1))
        return replace(shown, state="closed")

    async def _finish_stream(
        self, where: TeamsAddress, shown: TeamsHandle, parts: list[Activity]
    ) -> str | None:
        """The final message ends the stream (the first part; any others follow as messages)."""
        first, *rest = parts
        ordinary = list(first.entities or [])
        first.entities = [*ordinary, StreamInfo("final", stream_id=shown.stream_id)]
        try:
            await self._send(where, [first])
            answer_id: str | None = shown.stream_id  # the streamed message is the answer's
        except HttpOperationError as exc:
            if not _refused(exc):
                raise
            _log_refusal(exc, "finish")
            first.entities = ordinary or None
            (answer_id,) = await self._send(where, [first])
        if rest:
            answer_id = (await self._send(where, rest))[-1]
        return answer_id or None

    # -- other clients -----------------------------------------------------------------------------------

    async def _finish_with_card(
        self, where: TeamsAddress, shown: TeamsHandle | None, parts: list[Activity], reply: Reply
    ) -> str | None:
        ref = reply.ref or where.reply_to_id or ""
        card = sources_card(reply.citations, ref=ref, feedback=reply.feedback)
        if card is not None:
            _attach(parts[-1], card, first=True)
        if reply.generated:
            label = ai_message("", (), generated=True)
            for part in parts:
                part.entities = [label]
        return await self._write_all(where, shown, parts)

    # -- Bot Connector calls -------------------------------------------------------------------------

    async def _write_all(
        self, where: TeamsAddress, shown: TeamsHandle | None, parts: list[Activity]
    ) -> str | None:
        """`_write`, returning the id of the message that holds the last part."""
        held = await self._write(where, shown, parts)
        return held.activity_id if held is not None else None

    async def _write(
        self, where: TeamsAddress, shown: TeamsHandle | None, activities: list[Activity]
    ) -> TeamsHandle | None:
        """Edit the message already shown (`shown.activity_id`) with the first activity; send the rest.
        Returns the message that now holds the last activity."""
        held: list[str] = []

        async def write(ctx: TurnContext) -> None:
            rest = activities
            if shown is not None and shown.activity_id:
                first, *rest = activities
                first.id = shown.activity_id
                await ctx.update_activity(first)
                held.append(shown.activity_id)
            if rest:
                held.extend(await _send(ctx, rest))

        await self._converse(where, write)
        return TeamsHandle(activity_id=held[-1]) if held and held[-1] else None

    async def _send(self, where: TeamsAddress, activities: list[Activity]) -> list[str]:
        """Send new activities; their ids ("" where the connector gave none)."""
        ids: list[str] = []

        async def send(ctx: TurnContext) -> None:
            ids.extend(await _send(ctx, activities))

        await self._converse(where, send)
        return ids

    async def _converse(self, where: TeamsAddress, logic: Logic) -> None:
        reference = ConversationReference().deserialize(where.reference)

        async def callback(ctx: TurnContext) -> None:
            # botbuilder addresses replies to the id of the turn's activity, here a continuation event
            # with a random id: make it the user's message, so the reply threads under it (or, with no
            # reply_to_id, goes to the conversation as a new message).
            ctx.activity.id = where.reply_to_id
            await logic(ctx)

        await self._adapter.continue_conversation(reference, callback, self._app_id)


def _native(where: TeamsAddress) -> bool:
    """Teams itself, which shows citations, the AI label and the feedback loop (the Emulator does not)."""
    return where.reference.get("channelId") == NATIVE_CHANNEL


def _streams(where: TeamsAddress) -> bool:
    """Teams streams answers in personal chats only."""
    conversation = where.reference.get("conversation")
    return _native(where) and conversation_kind({"conversation": conversation}) == "personal"


def _decorate(parts: list[Activity], reply: Reply) -> None:
    """Teams' citations and AI label on each message of the answer, the feedback loop on the last."""
    for part in parts:
        entity = ai_message(part.text or "", reply.citations, generated=reply.generated)
        part.entities = [entity] if entity is not None else None
    if reply.feedback:
        parts[-1].channel_data = dict(FEEDBACK_LOOP)


def _status(exc: HttpOperationError) -> int | None:
    status = getattr(exc.response, "status_code", None)
    return status if isinstance(status, int) else None


def _refused(exc: HttpOperationError) -> bool:
    """Teams would not take a stream activity: 403 ContentStreamNotAllowed (streaming not allowed here,
    the user pressed stop, the stream already ended or ran out of time, too large) or 400 BadRequest."""
    return _status(exc) in (400, 403)


def _log_refusal(exc: HttpOperationError, step: str) -> None:
    error = getattr(getattr(exc, "error", None), "error", None)
    code = getattr(error, "code", None)
    message = str(getattr(error, "message", "") or "")[:200]
    log.info("teams_stream_refused", step=step, status=_status(exc), code=code, reason=message)


def _attach(activity: Activity, card: dict[str, Any], *, first: bool = False) -> None:
    attachment = Attachment(content_type=card["contentType"], content=card["content"])
    others = list(activity.attachments or [])
    activity.attachments = [attachment, *others] if first else [*others, attachment]


def _typing(body: str = "", stream: Entity | None = None) -> Activity:
    activity = Activity(type=ActivityTypes.typing)
    if body:
        activity.text = body
    if stream is not None:
        activity.entities = [stream]
    return activity


def _message(body: str) -> Activity:
    return Activity(type=ActivityTypes.message, text=body, text_format="markdown")


async def _send(ctx: TurnContext, activities: list[Activity]) -> list[str]:
    responses = await ctx.send_activities(activities)
    return [str(r.id) if r is not None and r.id else "" for r in responses]
