"""Where a Slack reply goes, and the message a job shows there: plain frozen data a queued job carries.

`to_dict` writes the keys a queued job has always carried, so jobs queued by an older version read
back (a `title` they may hold is ignored: the first question titles an assistant thread at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.model import Address, Handle, of_platform


@dataclass(frozen=True)
class SlackAddress:
    team: str  # the workspace the app is installed in
    channel: str
    user: str  # who wrote: an ephemeral reply is shown to them
    event_id: str  # of the question (the 👍/👎 buttons carry it)
    thread_ts: str | None = None  # None: a slash command, answered through its response_url
    dm: bool = False
    assistant: bool = False  # a DM thread: an AI app shows a status there instead of a placeholder
    response_url: str | None = None  # a slash command's: replies go there, visible to the asker only

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"team": self.team, "channel": self.channel, "user": self.user}
        data.update(event_id=self.event_id, dm=self.dm)
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        if self.assistant:
            data["assistant"] = True
        if self.response_url is not None:
            data["response_url"] = self.response_url
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlackAddress:
        thread_ts, response_url = data.get("thread_ts"), data.get("response_url")
        return cls(
            team=str(data["team"]),
            channel=str(data["channel"]),
            user=str(data["user"]),
            event_id=str(data.get("event_id", "")),
            thread_ts=str(thread_ts) if thread_ts is not None else None,
            dm=bool(data.get("dm")),
            assistant=bool(data.get("assistant")),
            response_url=str(response_url) if response_url is not None else None,
        )


@dataclass(frozen=True)
class SlackHandle:
    """The message a job shows: `ts` of the placeholder (none yet where a status shows instead), or of
    the answer streaming in (`streaming`) with the Markdown already sent to it (`sent`), so that each
    append sends only what is new. `plain`: this answer is not streamed (Slack refused, or the stream
    ended early): its message is edited instead. A new handle for each step, never changed."""

    channel: str
    ts: str = ""
    streaming: bool = False
    sent: str = ""
    plain: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"channel": self.channel}
        if self.ts:
            data["ts"] = self.ts
        if self.streaming:
            data.update(streaming=True, sent=self.sent)
        if self.plain:
            data["plain"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlackHandle | None:
        if not data:
            return None
        return cls(
            str(data["channel"]),
            str(data.get("ts") or ""),
            streaming=bool(data.get("streaming")),
            sent=str(data.get("sent") or ""),
            plain=bool(data.get("plain")),
        )


def slack_address(address: Address) -> SlackAddress:
    return of_platform(address, SlackAddress)


def slack_handle(handle: Handle | None) -> SlackHandle | None:
    return None if handle is None else of_platform(handle, SlackHandle)
