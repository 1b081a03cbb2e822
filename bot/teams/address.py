"""Where a Teams reply goes, and the message a job shows there: plain frozen data a queued job carries.

A reply goes through `continue_conversation` on the serialised ConversationReference, so any process
can send it; `reply_to_id` is the activity it answers (None: a new message in the conversation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

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


StreamState = Literal["open", "closed", "refused"]


@dataclass(frozen=True)
class TeamsHandle:
    """What a job shows in Teams while it runs: a message edited in place (`activity_id`: an ingest's
    progress, a streamed answer in the Emulator), or a Teams stream (`stream_id`).

    A stream is `open` while its chunks are accepted; `closed` when it was ended early with the text so
    far (near Teams' two-minute limit), so the answer replaces that message; `refused` when Teams would
    not stream (or stopped), so the answer comes as an ordinary message. A new handle for each step:
    times are wall-clock seconds, as the next step may run in another process.
    """

    activity_id: str = ""
    stream_id: str = ""
    sequence: int = 0  # streamSequence of the last activity of the stream
    started: float = 0.0  # when the stream began (time.time())
    sent: float = 0.0  # when its last chunk was sent
    state: StreamState = "open"

    @property
    def streaming(self) -> bool:
        return bool(self.stream_id) and self.state == "open"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeamsHandle | None:
        if not data.get("activity_id") and not data.get("stream_id") and data.get("state") != "refused":
            return None
        state = data.get("state")
        return cls(
            activity_id=str(data.get("activity_id") or ""),
            stream_id=str(data.get("stream_id") or ""),
            sequence=int(data.get("sequence") or 0),
            started=float(data.get("started") or 0.0),
            sent=float(data.get("sent") or 0.0),
            state=state if state in ("closed", "refused") else "open",
        )


def teams_address(address: Address) -> TeamsAddress:
    return of_platform(address, TeamsAddress)


def teams_handle(handle: Handle | None) -> TeamsHandle | None:
    return None if handle is None else of_platform(handle, TeamsHandle)
