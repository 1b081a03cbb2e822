"""Platform-neutral messages, jobs and replies: plain frozen data that survives serialisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rag.types import Citation

JobKind = Literal["ask", "ingest", "command"]


@dataclass(frozen=True)
class FileRef:
    """A file a user shared, as the platform describes it (nothing downloaded yet)."""

    name: str
    size: int | None
    url: str
    mimetype: str = ""
    id: str = ""
    permalink: str | None = None


@dataclass(frozen=True)
class Incoming:
    """One user message, translated from a platform payload."""

    platform: str  # "slack" | "teams" | "console"
    workspace: str  # "slack-T…", "teams-<tenant>", "local"
    user: str
    text: str
    event_id: str  # unique per user message; the key that makes a redelivery a no-op
    is_direct: bool  # a DM / personal chat: documents may be uploaded here
    thread: str  # key of the conversation thread, for memory
    address: dict[str, Any]  # where replies go, in the platform's own terms
    files: tuple[FileRef, ...] = ()
    # The user message itself, where one message can arrive as several events (Slack sends a mention
    # as both `app_mention` and `message`): the dispatcher answers each key once. Empty: event_id.
    message_key: str = ""
    mentioned: bool = False  # the message names the bot: files shared with it are meant for it
    # Whether to answer is the dispatcher's call: a message addressed to the bot (a mention, a DM) is
    # answered; another one only when it is `in_thread` and the bot has taken part in that thread.
    addressed: bool = True
    in_thread: bool = False
    # Set when the platform refuses the sender (Slack Connect: another organisation): the dispatcher
    # replies this instead of running a job, once per message.
    refusal: str = ""


@dataclass(frozen=True)
class Working:
    """What a sender shows at once, while the job runs: a search, or these files being read."""

    kind: Literal["ask", "ingest"]
    files: tuple[str, ...] = ()  # the names being read, as a reply echoes them
    question: str = ""
    new_thread: bool = True  # the bot has not answered in this thread before


@dataclass(frozen=True)
class Job:
    """What to do for one message, and where to reply. Runs in this process or on a worker."""

    id: str
    kind: JobKind
    platform: str
    kb: str
    user: str
    text: str
    thread: str
    address: dict[str, Any]
    files: tuple[FileRef, ...] = ()
    is_admin: bool = False
    handle: dict[str, Any] = field(default_factory=dict)  # the "working…" message to replace

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        files = tuple(FileRef(**f) for f in data.get("files", ()))
        return cls(**{**data, "files": files})


ReplyKind = Literal["answer", "info", "error"]


@dataclass(frozen=True)
class Reply:
    text: str  # Markdown; each sender converts it to the platform's format
    kind: ReplyKind = "info"
    citations: tuple[Citation, ...] = ()
    feedback: bool = False  # offer 👍/👎
    ephemeral: bool = False  # visible to the asker only, where the platform allows
