"""Replies into Slack threads: a working message first, then `chat.update` with the answer.

The address comes from `translate`: team, channel, thread_ts, user, event_id, and `dm`, `assistant`
(a DM thread, where an AI app shows a status instead of a placeholder, and its first question
titles the thread), `response_url` (a slash command: replies go there, visible to the asker).
"""

from __future__ import annotations

from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core import text
from bot.core.model import Reply, Working
from bot.slack import mrkdwn
from bot.slack.render import SlackMessage, render_reply, render_working, status_text

log = structlog.get_logger(__name__)

TITLE_LIMIT = 80


class SlackSender:
    """The core's ReplySender for Slack, on one shared AsyncWebClient (which retries 429s)."""

    def __init__(self, *, client: AsyncWebClient, webhook_timeout: float = 10.0) -> None:
        self._client = client
        self._webhook_timeout = webhook_timeout

    async def begin(self, address: dict[str, Any], working: Working) -> dict[str, Any]:
        shown = text.working(working)
        # The first question of an assistant thread names it in the user's list of threads.
        title = working.question if working.new_thread else ""
        if address.get("assistant") and await self._set_status(address, status_text(shown), title=title):
            return {"channel": address["channel"]}  # the status shows; the answer will be a new message
        response = await self._client.chat_postMessage(
            channel=address["channel"], thread_ts=address["thread_ts"], text=mrkdwn.to_mrkdwn(shown)
        )
        return {"channel": response["channel"], "ts": response["ts"]}

    async def update(self, address: dict[str, Any], handle: dict[str, Any], text: str) -> None:
        shown = render_working(text)
        if handle.get("ts"):
            await self._client.chat_update(channel=handle["channel"], ts=handle["ts"], text=shown)
            return
        response = await self._client.chat_postMessage(
            channel=address["channel"], thread_ts=address["thread_ts"], text=shown
        )
        handle.update(channel=response["channel"], ts=response["ts"])  # later edits replace this one

    async def finish(self, address: dict[str, Any], handle: dict[str, Any], reply: Reply) -> None:
        messages = render_reply(reply, feedback_value=str(address.get("event_id", "")))
        if address.get("response_url") and await self._respond(address["response_url"], messages):
            return
        private = reply.ephemeral or "response_url" in address  # a slash command's replies stay private
        if (
            private
            and not handle.get("ts")
            and not address.get("dm")
            and await self._post_ephemeral(address, messages)
        ):
            return
        first, *rest = messages
        if not (handle.get("ts") and await self._replace(handle, first)):
            await self._post(address, first)
        for message in rest:
            await self._post(address, message)

    # -- Web API calls -----------------------------------------------------------------------------

    async def _post(self, address: dict[str, Any], message: SlackMessage) -> None:
        await self._client.chat_postMessage(
            channel=address["channel"],
            thread_ts=address.get("thread_ts"),
            text=message.text,
            blocks=message.blocks or None,
            unfurl_links=False,
        )

    async def _replace(self, handle: dict[str, Any], message: SlackMessage) -> bool:
        try:
            await self._client.chat_update(
                channel=handle["channel"], ts=handle["ts"], text=message.text, blocks=message.blocks or []
            )
        except SlackApiError as exc:
            # Someone deleted the working message, or it is too old to edit: post the reply instead.
            log.warning("slack_update_failed", error=exc.response.get("error"), ts=handle["ts"])
            return False
        return True

    async def _post_ephemeral(self, address: dict[str, Any], messages: list[SlackMessage]) -> bool:
        try:
            for message in messages:
                await self._client.chat_postEphemeral(
                    channel=address["channel"],
                    user=address["user"],
                    thread_ts=address.get("thread_ts"),
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

    async def _set_status(self, address: dict[str, Any], status: str, *, title: str) -> bool:
        """Show "threadwise is …" under the thread (AI app threads). False where Slack says no."""
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=address["channel"], thread_ts=address["thread_ts"], status=status
            )
        except SlackApiError as exc:
            log.info("slack_status_unavailable", error=exc.response.get("error"))
            return False
        if title:
            try:
                await self._client.assistant_threads_setTitle(
                    channel_id=address["channel"], thread_ts=address["thread_ts"], title=title[:TITLE_LIMIT]
                )
            except SlackApiError as exc:
                log.info("slack_title_unavailable", error=exc.response.get("error"))
        return True
