"""A `Reply` → the Slack messages that show it: mrkdwn text, numbered Sources, 👍/👎 buttons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core import text
from bot.core.model import PartialAnswer, Reply, Update
from bot.slack import mrkdwn
from bot.slack.translate import FEEDBACK_DOWN, FEEDBACK_UP
from rag.types import Citation

FEEDBACK_BLOCK = "threadwise_feedback"
CURSOR = "▌"  # after an answer still streaming in
MORE = " …"


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage / chat.update: `text` is also the notification fallback of `blocks`."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def render_reply(reply: Reply, *, feedback_value: str = "") -> list[SlackMessage]:
    """One message per piece of a long answer; Sources and buttons go under the last one."""
    pieces = mrkdwn.split(mrkdwn.to_mrkdwn(reply.text) or "…")
    sources = _sources(reply.citations)
    if not sources and not reply.feedback:
        return [SlackMessage(p) for p in pieces]
    *before, last = pieces
    blocks = [_section(last)]
    blocks.extend(_section(part) for part in mrkdwn.split(sources) if sources)
    if reply.feedback:
        blocks.append(_feedback_buttons(feedback_value))
    return [*(SlackMessage(p) for p in before), SlackMessage(last, blocks)]


def render_working(markdown: str, *, cursor: bool = False) -> str:
    """Text for the working message (an answer streaming in, with a typing cursor; an ingest's
    progress): its first piece only, the cursor kept outside the markup (`## ▌` must not become a
    bold cursor)."""
    pieces = mrkdwn.split(mrkdwn.to_mrkdwn(markdown.rstrip()) or "…")
    shown = pieces[0] + (MORE if len(pieces) > 1 else "")
    return f"{shown} {CURSOR}" if cursor else shown


def render_update(update: Update) -> str:
    if isinstance(update, PartialAnswer):
        return render_working(update.text, cursor=True)
    return render_working(text.ingest_progress(update.name, update.done, update.total))


def status_text(working_markdown: str) -> str:
    """The assistant-thread status from the working text: "_Searching your documents…_" →
    "is searching your documents…" (Slack shows it after the app's name)."""
    plain = working_markdown.strip().strip("_*").strip()
    return f"is {plain[:1].lower()}{plain[1:]}" if plain else "is working on it…"


def _sources(citations: Sequence[Citation]) -> str:
    """The numbered Sources, each file linked by its name: the one labelled link, as its target is
    the file's own place (its Slack permalink or the URL it was added with), not document text."""
    if not citations:
        return ""
    lines = [f"*{text.SOURCES_TITLE}*"]
    for c in citations:
        name = mrkdwn.labelled_link(c.url, c.document) if c.url else mrkdwn.escape(c.document)
        where = f" — {mrkdwn.escape(c.locator)}" if c.locator else ""
        lines.append(f"[{c.number}] {name}{where}")
    return "\n".join(lines)


def _section(mrkdwn_text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn_text}}


def _feedback_buttons(value: str) -> dict[str, Any]:
    def button(action_id: str, label: str) -> dict[str, Any]:
        return {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label, "emoji": True},
            "value": value[:2000] or "-",
        }

    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK,
        "elements": [button(FEEDBACK_UP, text.FEEDBACK_UP), button(FEEDBACK_DOWN, text.FEEDBACK_DOWN)],
    }
