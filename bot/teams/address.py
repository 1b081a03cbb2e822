"""Where a Teams reply goes, and the message a job shows there: plain frozen data a queued job carries.

A reply goes through `continue_conversation` on the serialised ConversationReference, so any process
can send it; `reply_to_id` is the activity it answers (None: a new message in the conversation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.model import Address, Handle, of_platform


@dataclass(frozen=True)
class TeamsAddress:
    reference: dict[str, Any]  # the ConversationReference as botbuilder serialises it (plain JSON)
    reply_to_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "reply_to_id": self.reply_to_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeamsAddress:
        reply_to = data.get("reply_to_id")
        return cls(dict(data["reference"]), str(reply_to) if reply_to is not None else None)


@dataclass(frozen=True)
class TeamsHandle:
    """The message a streamed answer is being written into."""

    activity_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"activity_id": self.activity_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeamsHandle | None:
        return cls(str(data["activity_id"])) if data.get("activity_id") else None


def teams_address(address: Address) -> TeamsAddress:
    return of_platform(address, TeamsAddress)


def teams_handle(handle: Handle | None) -> TeamsHandle | None:
    return None if handle is None else of_platform(handle, TeamsHandle)
