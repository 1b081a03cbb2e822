"""A `Reply` → the Slack messages that show it: mrkdwn text, numbered Sources, Slack's 👍/👎
feedback buttons (a `context_actions` block with a `feedback_buttons` element, whose values carry the
vote and the answer's ref: docs.slack.dev/reference/block-kit/block-elements/feedback-buttons-element)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core import text
from bot.core.feedback import COMMENT_LIMIT, REASONS
from bot.core.model import PartialAnswer, Reply, ScopeOffer, Update
from bot.slack import mrkdwn
from bot.slack import text as slack_text
from bot.slack.translate import (
    COMMENT_ACTION,
    COMMENT_BLOCK,
    FEEDBACK_VOTE,
    REASON_ACTION,
    REASON_BLOCK,
    REASON_VIEW,
    SCOPE_ACTION_PREFIX,
    SCOPE_CHANNEL,
    SCOPE_PRIVATE,
    SCOPE_WORKSPACE,
)
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
    if not sources and not reply.feedback and reply.offer is None:
        return [SlackMessage(p) for p in pieces]
    *before, last = pieces
    blocks = [_section(last), *render_tail(reply, feedback_value=feedback_value)]
    return [*(SlackMessage(p) for p in before), SlackMessage(last, blocks)]


def render_tail(reply: Reply, *, feedback_value: str) -> list[dict[str, Any]]:
    """The blocks under an answer's text: its Sources, then the feedback buttons (where offered)."""
    sources = _sources(reply.citations)
    blocks = [_section(part) for part in mrkdwn.split(sources)] if sources else []
    if reply.feedback:
        blocks.append(feedback_buttons(feedback_value))
    if reply.offer is not None:
        blocks.append(scope_buttons(reply.offer))
    return blocks


def scope_buttons(offer: ScopeOffer) -> dict[str, Any]:
    """Who may ask about an upload's documents: the workspace, only its sender, or a channel picked
    from those the sender can see (Slack's conversations_select). The block names the upload."""

    def button(action_id: str, label: str) -> dict[str, Any]:
        return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}}

    picker = {
        "type": "conversations_select",
        "action_id": SCOPE_CHANNEL,
        "placeholder": {"type": "plain_text", "text": slack_text.SCOPE_CHANNEL},
        "filter": {
            "include": ["public", "private"],
            "exclude_bot_users": True,
            "exclude_external_shared_channels": True,
        },
    }
    return {
        "type": "actions",
        "block_id": f"{SCOPE_ACTION_PREFIX}{offer.key}"[:255],
        "elements": [
            button(SCOPE_WORKSPACE, slack_text.SCOPE_WORKSPACE),
            button(SCOPE_PRIVATE, slack_text.SCOPE_PRIVATE),
            picker,
        ],
    }


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


def feedback_buttons(ref: str) -> dict[str, Any]:
    """Slack's own 👍/👎 under an answer; each value is `<vote>:<ref>` (a click names only its value)."""

    def button(vote: str, label: str, spoken: str) -> dict[str, Any]:
        return {
            "text": {"type": "plain_text", "text": label},
            "value": f"{vote}:{ref}"[:2000],
            "accessibility_label": spoken,
        }

    return {
        "type": "context_actions",
        "block_id": FEEDBACK_BLOCK,
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_VOTE,
                "positive_button": button("up", text.FEEDBACK_UP, "Mark this answer as helpful"),
                "negative_button": button("down", text.FEEDBACK_DOWN, "Mark this answer as not helpful"),
            }
        ],
    }


def reason_form(metadata: str) -> dict[str, Any]:
    """The modal a 👎 opens: why (radio buttons, required) and the person's own words (optional);
    `metadata` (the answer voted on) comes back with the submission."""

    def plain(words: str) -> dict[str, Any]:
        return {"type": "plain_text", "text": words}

    options = [{"text": plain(label), "value": key} for key, label in REASONS.items()]
    comment = {"type": "plain_text_input", "action_id": COMMENT_ACTION, "multiline": True}
    return {
        "type": "modal",
        "callback_id": REASON_VIEW,
        "private_metadata": metadata,
        "title": plain(slack_text.REASON_TITLE),
        "submit": plain(slack_text.REASON_SUBMIT),
        "close": plain(slack_text.REASON_CLOSE),
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": plain(slack_text.REASON_LABEL),
                "element": {"type": "radio_buttons", "action_id": REASON_ACTION, "options": options},
            },
            {
                "type": "input",
                "block_id": COMMENT_BLOCK,
                "optional": True,
                "label": plain(slack_text.REASON_COMMENT_LABEL),
                "element": {**comment, "max_length": COMMENT_LIMIT},
            },
        ],
    }
