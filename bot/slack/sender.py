"""Replies into Slack threads: a working message first; an answer written by the model streams in
(bot/slack/stream.py), any other reply replaces the working message with `chat.update`.

The address (bot/slack/address.py) comes from `translate`; in a DM thread (`assistant`) an AI app
shows a status instead of a placeholder, and the thread's first question titles it; a slash command's
replies go to its `response_url`, visible to the asker. Where Slack will not stream (or a stream ends
early), the answer goes on as before: the working message is edited, then replaced by the answer.
"""

from __future__ import annotations

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core import text
from bot.core.model import Address, Handle, PartialAnswer, Reply, Update, Working
from bot.slack import mrkdwn
from bot.slack import text as slack_text
from bot.slack.address import SlackAddress, SlackHandle, slack_address, slack_handle
from bot.slack.budget import UPDATE, CallBudget
from bot.slack.render import SlackMessage, render_reply, render_update, status_text
from bot.slack.stream import SlackStreams

log = structlog.get_logger(__name__)

TITLE_LIMIT = 80


class SlackSender:
    """The core's ReplySender for Slack, on one shared AsyncWebClient (which retries 429s)."""

    def __init__(
        self, *, client: AsyncWebClient, webhook_timeout: float = 10.0, budget: CallBudget | None = None
    ) -> None:
        self._client = client
        self._webhook_timeout = webhook_timeout
        self._budget = budget or CallBudget()
        self._streams = SlackStreams(client=client, budget=self._budget)

    async def begin(self, address: Address, working: Working) -> SlackHandle:
        where = slack_address(address)
        shown = text.working(working)
        # The first question of an assistant thread names it in the user's list of threads.
        title = working.question if working.new_thread else ""
        loading = slack_text.LOADING if working.kind == "ask" else ()
        if where.assistant and await self._set_status(
            where, status_text(shown), title=title, loading=loading
        ):
            return SlackHandle(where.channel)  # the status shows; the answer will be a new message
        response = await self._client.chat_postMessage(
            channel=where.channel, thread_ts=where.thread_ts, text=mrkdwn.to_mrkdwn(shown)
        )
        return SlackHandle(str(response["channel"]), str(response["ts"]))

    async def update(self, address: Address, handle: Handle | None, update: Update) -> SlackHandle:
        where = slack_address(address)
        shown = slack_handle(handle) or SlackHandle(where.channel)
        if isinstance(update, PartialAnswer) and where.thread_ts and not shown.plain:
            shown = await self._streams.advance(where, shown, update.text)
            if not shown.plain:
                return shown
        body = render_update(update)
        if shown.ts:
            if self._budget.take(where.team, UPDATE):  # else the next edit shows it
                await self._client.chat_update(channel=shown.channel, ts=shown.ts, text=body)
            return shown
        response = await self._client.chat_postMessage(
            channel=where.channel, thread_ts=where.thread_ts, text=body
        )
        return SlackHandle(str(response["channel"]), str(response["ts"]), plain=shown.plain)

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> None:
        where, shown = slack_address(address), slack_handle(handle)
        ref = reply.ref or where.event_id
        if shown is not None and shown.streaming and await self._streams.finish(where, shown, reply, ref):
            return
        messages = render_reply(reply, feedback_value=ref)
        if where.response_url and await self._respond(where.response_url, messages):
            return
        placeholder = shown.ts if shown is not None else ""
        private = reply.ephemeral or where.response_url is not None  # a slash command's replies stay private
        if private and not placeholder and not where.dm and await self._post_ephemeral(where, messages):
            return
        first, *rest = messages
        if not (shown is not None and placeholder and await self._replace(where, shown, first)):
            await self._post(where, first)
        for message in rest:
            await self._post(where, message)

    # -- Web API calls -----------------------------------------------------------------------------

    async def _post(self, where: SlackAddress, message: SlackMessage) -> None:
        await self._client.chat_postMessage(
            channel=where.channel,
            thread_ts=where.thread_ts,
            text=message.text,
            blocks=message.blocks or None,
            unfurl_links=False,
        )

    async def _replace(self, where: SlackAddress, shown: SlackHandle, message: SlackMessage) -> bool:
        await self._budget.wait(where.team, UPDATE)
        try:
            await self._client.chat_update(
                channel=shown.channel, ts=shown.ts, text=message.text, blocks=message.blocks or []
            )
        except SlackApiError as exc:
            # Someone deleted the working message, or it is too old to edit: post the reply instead.
            log.warning("slack_update_failed", error=exc.response.get("error"), ts=shown.ts)
            return False
        return True

    async def _post_ephemeral(self, where: SlackAddress, messages: list[SlackMessage]) -> bool:
        try:
            for message in messages:
                await self._client.chat_postEphemeral(
                    channel=where.channel,
                    user=where.user,
                    thread_ts=where.thread_ts,
                    text=message.text,
                    blocks=message.blocks or None,
                )
        except SlackApiError as exc:
            # e.g. the asker left the channel: a visible reply is better than none.
            log.warning("slack_ephemeral_failed", error=exc.response.get("error"))
            return False
        return True

    async def _respond(self, url: str, messages: list[SlackMessage]) -> bool:
        """A slash command's reply through its response_url: works even where the bot is no member."""
        webhook = AsyncWebhookClient(url, timeout=int(self._webhook_timeout))
        for message in messages:
            response = await webhook.send(
                text=message.text, blocks=message.blocks or None, response_type="ephemeral"
            )
            if response.status_code != 200:
                log.warning("slack_response_url_failed", status=response.status_code)
                return False
        return True

    async def _set_status(
        self, where: SlackAddress, status: str, *, title: str, loading: tuple[str, ...]
    ) -> bool:
        """Show "threadwise is …" under the thread (AI app threads), and the `loading` lines Slack
        rotates there. False where Slack says no."""
        thread_ts = where.thread_ts or ""  # an assistant thread always has one
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=where.channel,
                thread_ts=thread_ts,
                status=status,
                loading_messages=list(loading) or None,
            )
        except SlackApiError as exc:
            log.info("slack_status_unavailable", error=exc.response.get("error"))
            return False
        if title:
            try:
                await self._client.assistant_threads_setTitle(
                    channel_id=where.channel, thread_ts=thread_ts, title=title[:TITLE_LIMIT]
                )
            except SlackApiError as exc:
                log.info("slack_title_unavailable", error=exc.response.get("error"))
        return True
