"""Replies to Teams: typing at once, then the answer in the thread, through the Bot Connector.

Every call goes through `continue_conversation` on the ConversationReference the job carries, so the
same code replies from the process that took the message or from a worker elsewhere: no request or
turn context is needed, only the address built by `translate.address_of` (bot/teams/address.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes, Attachment, ConversationReference, Entity

from bot.core import text
from bot.core.model import Address, Handle, PartialAnswer, Reply, Update, Working
from bot.teams.address import TeamsAddress, TeamsHandle, teams_address, teams_handle
from bot.teams.render import MAX_MESSAGE_CHARS, sources_card, split_message, teams_markdown

Logic = Callable[[TurnContext], Awaitable[None]]
CURSOR = "▌"  # after an answer still streaming in


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
    """ReplySender for Teams. A streamed answer is written into one message, edited in place."""

    def __init__(self, adapter: CloudAdapter, *, app_id: str | None, max_chars: int = MAX_MESSAGE_CHARS):
        self._adapter = adapter
        self._app_id = app_id or None
        self._max_chars = max_chars

    async def begin(self, address: Address, working: Working) -> None:
        # Teams shows "typing…" until the next message or ~3 s: the first streamed edit follows within
        # about a second, so no placeholder message is needed.
        async def typing(ctx: TurnContext) -> None:
            await _send(ctx, [Activity(type=ActivityTypes.typing)])

        await self._converse(teams_address(address), typing)

    async def update(self, address: Address, handle: Handle | None, update: Update) -> TeamsHandle | None:
        if isinstance(update, PartialAnswer):
            shown = update.text + " " + CURSOR
        else:
            shown = text.ingest_progress(update.name, update.done, update.total)
        activity = _message(teams_markdown(shown)[: self._max_chars])
        return await self._write(teams_address(address), teams_handle(handle), [activity])

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> None:
        where = teams_address(address)
        activities = [_message(part) for part in split_message(teams_markdown(reply.text), self._max_chars)]
        card = sources_card(reply.citations, ref=where.reply_to_id or "", feedback=reply.feedback)
        if card is not None:
            activities[-1].attachments = [
                Attachment(content_type=card["contentType"], content=card["content"])
            ]
        if reply.kind == "answer":
            for activity in activities:
                activity.entities = [AiGeneratedLabel()]
        await self._write(where, teams_handle(handle), activities)

    async def _write(
        self, where: TeamsAddress, shown: TeamsHandle | None, activities: list[Activity]
    ) -> TeamsHandle | None:
        """Edit the message already shown (a streamed answer) with the first activity; send the rest.
        Returns the message that now holds the first activity."""
        written: list[TeamsHandle | None] = []

        async def write(ctx: TurnContext) -> None:
            rest = activities
            if shown is not None:
                first, *rest = activities
                first.id = shown.activity_id
                await ctx.update_activity(first)
                written.append(shown)
            if rest:
                ids = await _send(ctx, rest)
                written.append(TeamsHandle(ids[0]) if ids[0] else None)

        await self._converse(where, write)
        return written[0] if written else None

    async def _converse(self, where: TeamsAddress, logic: Logic) -> None:
        reference = ConversationReference().deserialize(where.reference)

        async def callback(ctx: TurnContext) -> None:
            # botbuilder addresses replies to the id of the turn's activity, here a continuation event
            # with a random id: make it the user's message, so the reply threads under it (or, with no
            # reply_to_id, goes to the conversation as a new message).
            ctx.activity.id = where.reply_to_id
            await logic(ctx)

        await self._adapter.continue_conversation(reference, callback, self._app_id)


def _message(body: str) -> Activity:
    return Activity(type=ActivityTypes.message, text=body, text_format="markdown")


async def _send(ctx: TurnContext, activities: list[Activity]) -> list[str]:
    responses = await ctx.send_activities(activities)
    return [str(r.id) if r is not None and r.id else "" for r in responses]
