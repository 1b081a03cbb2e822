"""What makes an answer look native in Teams: the streaming protocol's `streaminfo` entity, citations
and the "AI generated" label (one schema.org Message entity), and the feedback loop (👍/👎 under the
message, answered by a `message/submitAction` invoke).

Shapes and limits from Microsoft's Teams docs: "Stream bot messages" (bots/streaming-ux.md) and
"Enhance AI-generated bot messages" (bots/how-to/bot-messages-ai-generated-content.md). Pure functions:
the sender puts what they return on its activities.

botbuilder's `Entity` serialises `type` only (msrest drops every other attribute and dict key), so each
entity here is a subclass with its own attribute map.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from botbuilder.schema import Entity

from rag.types import Citation

MAX_CITATIONS = 20  # Teams refuses a message with more (400)
NAME_CHARS = 80  # a citation's title
ABSTRACT_CHARS = 160  # the excerpt in its pop-up
FEEDBACK_LOOP = {"feedbackLoopEnabled": True}  # channelData: Teams' 👍/👎 and its default form

StreamType = Literal["informative", "streaming", "final"]
_MARKER = re.compile(r"\[(\d{1,3})\]")


class StreamInfo(Entity):
    """One activity's place in a Teams stream. The first (informative or streaming) has sequence 1 and
    no id; Teams answers with the stream's id, which every later activity names. The final message has
    no sequence."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "stream_id": {"key": "streamId", "type": "str"},
        "stream_type": {"key": "streamType", "type": "str"},
        "stream_sequence": {"key": "streamSequence", "type": "int"},
    }

    def __init__(self, stream_type: StreamType, *, stream_id: str = "", sequence: int | None = None):
        super().__init__(type="streaminfo")
        self.stream_id = stream_id or None
        self.stream_type = stream_type
        self.stream_sequence = sequence


class AiMessage(Entity):
    """The message's schema.org entity: the AI label and the citations `[n]` in its text point to."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "context": {"key": "@context", "type": "str"},
        "schema_type": {"key": "@type", "type": "str"},
        "schema_id": {"key": "@id", "type": "str"},
        "additional_type": {"key": "additionalType", "type": "[str]"},
        "citation": {"key": "citation", "type": "[object]"},
    }

    def __init__(self, *, generated: bool, claims: list[dict[str, Any]]) -> None:
        super().__init__(type="https://schema.org/Message")
        self.context = "https://schema.org"
        self.schema_type = "Message"
        self.schema_id = ""
        self.additional_type = ["AIGeneratedContent"] if generated else None
        self.citation = claims or None


def ai_message(text: str, citations: Sequence[Citation], *, generated: bool) -> AiMessage | None:
    """The entity for one message of an answer: the label if the model wrote it, and the citations its
    text refers to. None when there is neither."""
    found = claims(text, citations)
    if not generated and not found:
        return None
    return AiMessage(generated=generated, claims=found)


def claims(text: str, citations: Sequence[Citation]) -> list[dict[str, Any]]:
    """A Claim for each citation whose marker `[n]` is in `text` (Teams matches them by position)."""
    cited = {int(n) for n in _MARKER.findall(text)}
    return [_claim(c) for c in citations if c.number in cited][:MAX_CITATIONS]


def _claim(citation: Citation) -> dict[str, Any]:
    appearance: dict[str, Any] = {
        "@type": "DigitalDocument",
        "name": _cap(citation.document, NAME_CHARS),
        "abstract": _cap(citation.excerpt or citation.label(), ABSTRACT_CHARS),
    }
    if citation.url and citation.url.startswith(("https://", "http://")):
        appearance["url"] = citation.url
    return {"@type": "Claim", "position": citation.number, "appearance": appearance}


def _cap(value: str, limit: int) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
