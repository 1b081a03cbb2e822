"""Replies to Teams: typing at once, then the answer in the thread, through the Bot Connector.

Every call goes through `continue_conversation` on the ConversationReference the job carries, so the
same code replies from the process that took the message or from a worker elsewhere: no request or
turn context is needed, only the plain-JSON address built by `translate.address_of`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes, Attachment, ConversationReference, Entity

from bot.core.model import Reply, Working
from bot.teams.render import MAX_MESSAGE_CHARS, sources_card, split_message, teams_markdown

Logic = Callable[[TurnContext], Awaitable[None]]


class AiGeneratedLabel(Entity):
    """The entity that makes Teams label a message "AI generated" (as in the outgoing fixture).

    botbuilder's `Entity` serialises `type` only, so the other keys need their own attribute map.
    """

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "context": {"key": "@context", "type": "str"},
        "schema_type": {"key": "@type", "type": "str"},
        "additional_type": {"key": "additionalType", "type": "[str]"},
    }

    def __init__(self) -> None:
        super().__init__(type="https://schema.org/Message")
        self.context = "https://schema.org"
        self.schema_type = "Message"
        self.additional_type = ["AIGeneratedContent"]


class TeamsSender:
    """ReplySender for Teams. The handle remembers the message a streamed answer is written into."""

    def __init__(self, adapter: CloudAdapter, *, app_id: str | None, max_chars: int = MAX_MESSAGE_CHARS):
        self._adapter = adapter
        self._app_id = app_id or None
        self._max_chars = max_chars

    async def begin(self, address: dict[str, Any], working: Working) -> dict[str, Any]:
        # Teams shows "typing…" until the next message or ~3 s: the first streamed edit follows within
        # about a second, so no placeholder message is needed.
        async def typing(ctx: TurnContext) -> None:
            await _send(ctx, [Activity(type=ActivityTypes.typing)])

        await self._converse(address, typing)
        return {}

    async def update(self, address: dict[str, Any], handle: dict[str, Any], text: str) -> None:
        activity = _message(teams_markdown(text)[: self._max_chars])
        await self._converse(address, lambda ctx: self._write(ctx, handle, [activity]))

    async def finish(self, address: dict[str, Any], handle: dict[str, Any], reply: Reply) -> None:
        activities = [_message(part) for part in split_message(teams_markdown(reply.text), self._max_chars)]
        card = sources_card(
            reply.citations, ref=str(address.get("reply_to_id") or ""), feedback=reply.feedback
        )
        if card is not None:
            activities[-1].attachments = [
                Attachment(content_type=card["contentType"], content=card["content"])
            ]
        if reply.kind == "answer":
            for activity in activities:
                activity.entities = [AiGeneratedLabel()]
        await self._converse(address, lambda ctx: self._write(ctx, handle, activities))

    async def _write(self, ctx: TurnContext, handle: dict[str, Any], activities: list[Activity]) -> None:
        """Edit the message already shown (a streamed answer) with the first activity; send the rest."""
        shown = handle.get("activity_id")
        if shown:
            first, *activities = activities
            first.id = shown
            await ctx.update_activity(first)
        if activities:
            ids = await _send(ctx, activities)
            handle.setdefault("activity_id", ids[0])

    async def _converse(self, address: dict[str, Any], logic: Logic) -> None:
        reference = ConversationReference().deserialize(address["reference"])
        reply_to = address.get("reply_to_id")

        async def callback(ctx: TurnContext) -> None:
            # botbuilder addresses replies to the id of the turn's activity, here a continuation event
            # with a random id: make it the user's message, so the reply threads under it (or, with no
            # reply_to_id, goes to the conversation as a new message).
            ctx.activity.id = reply_to
            await logic(ctx)

        await self._adapter.continue_conversation(reference, callback, self._app_id)


def _message(text: str) -> Activity:
    return Activity(type=ActivityTypes.message, text=text, text_format="markdown")


async def _send(ctx: TurnContext, activities: list[Activity]) -> list[str]:
    responses = await ctx.send_activities(activities)
    return [str(r.id) if r is not None and r.id else "" for r in responses]
