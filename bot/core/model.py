"""Platform-neutral messages, jobs and replies: plain frozen data that survives serialisation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol, TypeVar

from rag.types import Citation

JobKind = Literal["ask", "ingest", "command"]


class Address(Protocol):
    """Where replies go, in a platform's own terms (a Slack thread, a Teams conversation reference):
    a frozen dataclass of the platform's, plain data that travels with a job through the queue."""

    def to_dict(self) -> dict[str, Any]: ...


class Handle(Protocol):
    """A message the bot shows while a job runs (a placeholder, a streamed answer), in a platform's
    own terms: what the next update or the final reply replaces."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PartialAnswer:
    """The answer so far, while it streams in (Markdown): each sender shows it its own way."""

    text: str


@dataclass(frozen=True)
class IngestProgress:
    """How far the reading of one document has got: `done` of `total` passages embedded."""

    name: str
    done: int
    total: int


Update = PartialAnswer | IngestProgress

T = TypeVar("T")


def of_platform(value: object, kind: type[T]) -> T:
    """An address or a handle as its platform's own type; another platform's is a bug."""
    if not isinstance(value, kind):
        raise TypeError(f"expected a {kind.__name__}, got a {type(value).__name__}")
    return value


class Terms(Protocol):
    """A platform's own terms: its addresses and handles read back from plain data (the queue)."""

    def read_address(self, data: dict[str, Any]) -> Address: ...

    def read_handle(self, data: dict[str, Any]) -> Handle | None:
        """None for `{}`: no message shown."""
        ...


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
    address: Address  # where replies go
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
    # Where it was said, as a scope (rag/scopes.py): `channel:<id>` for a channel or group chat (and
    # its threads), `private:<user>` for a direct message. What a question there may read follows.
    place: str = ""
    # A scope the sender chose: with an upload in a direct message ("for #channel"), or with a click
    # on an upload's choice (`choice`: that upload's key, ScopeOffer.key). `handle`: the message
    # clicked, which the reply replaces.
    scope: str = ""
    choice: str = ""
    handle: Handle | None = None


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
    address: Address
    files: tuple[FileRef, ...] = ()
    is_admin: bool = False
    handle: Handle | None = None  # the "working…" message the dispatcher showed, to be replaced
    place: str = ""  # Incoming.place
    scope: str = ""  # Incoming.scope
    choice: str = ""  # Incoming.choice; a job with a choice and no scope applies the upload's default

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, as a queue carries it."""
        return {
            **{f.name: getattr(self, f.name) for f in fields(self)},
            "address": self.address.to_dict(),
            "files": [asdict(f) for f in self.files],
            "handle": self.handle.to_dict() if self.handle is not None else {},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], platforms: Mapping[str, Terms]) -> Job:
        """A job from `to_dict`, its address and handle read in the terms of its platform."""
        terms = platforms[data["platform"]]
        return cls(
            **{
                **data,
                "address": terms.read_address(data["address"]),
                "files": tuple(FileRef(**f) for f in data.get("files", ())),
                "handle": terms.read_handle(data.get("handle") or {}),
            }
        )


ReplyKind = Literal["answer", "info", "error"]


@dataclass(frozen=True)
class ScopeOffer:
    """Buttons under an upload's reply in a direct message: who may ask about its documents (the
    workspace, only the sender, or one channel). A click comes back as an Incoming with `choice=key`."""

    key: str
    names: tuple[str, ...]
    default: str = ""  # the scope they get if no one chooses within `minutes`; "" when nothing is pending
    minutes: float = 0.0


@dataclass(frozen=True)
class Reply:
    text: str  # Markdown; each sender converts it to the platform's format
    kind: ReplyKind = "info"
    citations: tuple[Citation, ...] = ()
    feedback: bool = False  # offer 👍/👎
    ephemeral: bool = False  # visible to the asker only, where the platform allows
    ref: str = ""  # an answer's reference, which votes on it carry back (FeedbackVote.ref): its job's id
    generated: bool = False  # written by the language model, not quoted from the documents: labelled AI
    offer: ScopeOffer | None = None
