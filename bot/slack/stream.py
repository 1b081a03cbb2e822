"""An answer streamed into its thread with chat.startStream / appendStream / stopStream.

The first text starts the stream as a reply in the question's thread (naming the workspace and the
person who asked, as Slack requires in channels) and removes the placeholder, so the thread never holds
two messages for one answer. Each later update appends only the text not sent yet; the stop adds the
rest of the answer, its Sources and Slack's feedback buttons. Whatever goes wrong ends in `plain`: the
sender then edits the message with the whole answer, as it does for answers that are not streamed.
"""

from __future__ import annotations

import dataclasses
import uuid

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.model import Reply
from bot.slack import mrkdwn
from bot.slack.address import SlackAddress, SlackHandle
from bot.slack.budget import APPEND, DELETE, STOP, CallBudget
from bot.slack.render import render_tail

log = structlog.get_logger(__name__)

MARKDOWN_LIMIT = 12_000  # characters of markdown_text in one call (the methods' documented limit)
# The stream is over: expired (about five minutes after it started), stopped by the person, deleted.
ENDED = {"message_not_in_streaming_state", "stopped_by_user", "message_not_found"}


class SlackStreams:
    def __init__(self, *, client: AsyncWebClient, budget: CallBudget) -> None:
        self._client = client
        self._budget = budget

    async def advance(self, where: SlackAddress, shown: SlackHandle, partial: str) -> SlackHandle:
        """The answer so far into the stream, started on its first text. A `plain` handle back: this
        answer is not streamed, show it otherwise."""
        text = mrkdwn.to_stream_markdown(partial, partial=True)
        if not shown.streaming:
            return await self._start(where, shown, text[:MARKDOWN_LIMIT]) if text else shown
        new = text[len(shown.sent) :][:MARKDOWN_LIMIT] if text.startswith(shown.sent) else ""
        if not new or not self._budget.take(where.team, APPEND):
            return shown  # nothing new, or the minute's appends are spent: the next one carries it
        try:
            await self._client.chat_appendStream(channel=shown.channel, ts=shown.ts, markdown_text=new)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error not in ENDED:
                log.warning("slack_stream_append_failed", error=error, ts=shown.ts)
                return shown  # sent again with the next update
            log.info("slack_stream_ended_early", error=error, ts=shown.ts)
            self._budget.closed(where.team, shown.ts)
            return dataclasses.replace(shown, streaming=False, plain=True)
        return dataclasses.replace(shown, sent=shown.sent + new)

    async def finish(self, where: SlackAddress, shown: SlackHandle, reply: Reply, ref: str) -> bool:
        """Stop the stream with the rest of the answer, its Sources and buttons. False: the message
        must now be edited with the whole answer (the stream had ended, or the answer as written at
        the end does not continue what was streamed: citations are cleaned up at the end)."""
        final = mrkdwn.to_stream_markdown(reply.text)
        rest = final[len(shown.sent) :] if final.startswith(shown.sent) else None
        if rest is not None and len(rest) > MARKDOWN_LIMIT:
            rest = None
        blocks = render_tail(reply, feedback_value=ref) if rest is not None else []
        self._budget.closed(where.team, shown.ts)
        await self._budget.wait(where.team, STOP)
        try:
            await self._client.chat_stopStream(
                channel=shown.channel, ts=shown.ts, markdown_text=rest or None, blocks=blocks or None
            )
        except SlackApiError as exc:
            log.info("slack_stream_stop_failed", error=exc.response.get("error"), ts=shown.ts)
            return False
        return rest is not None

    async def _start(self, where: SlackAddress, shown: SlackHandle, text: str) -> SlackHandle:
        key = uuid.uuid4().hex
        if not self._budget.open_stream(where.team, key):
            return shown  # the minute's streams are spent: the placeholder stays until the answer
        try:
            response = await self._client.chat_startStream(
                channel=where.channel,
                thread_ts=where.thread_ts or "",
                markdown_text=text,
                recipient_team_id=where.team,
                recipient_user_id=where.user,
            )
        except SlackApiError as exc:  # not for this workspace or app, or not here: not this answer
            log.info("slack_streaming_refused", error=exc.response.get("error"), channel=where.channel)
            self._budget.closed(where.team, key)
            return dataclasses.replace(shown, plain=True)
        ts = str(response["ts"])
        self._budget.opened(where.team, key, ts)
        if shown.ts:
            await self._remove(where.team, shown)
        return SlackHandle(str(response.get("channel") or where.channel), ts, streaming=True, sent=text)

    async def _remove(self, team: str, placeholder: SlackHandle) -> None:
        """The placeholder goes once the answer shows: one message per answer in the thread."""
        await self._budget.wait(team, DELETE, at_most=5.0)
        try:
            await self._client.chat_delete(channel=placeholder.channel, ts=placeholder.ts)
        except SlackApiError as exc:  # already gone: someone deleted it
            log.info("slack_placeholder_delete_failed", error=exc.response.get("error"), ts=placeholder.ts)
