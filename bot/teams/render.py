"""Replies in Teams' terms: its Markdown, messages split to size, sources and 👍/👎 as an Adaptive Card,
and the buttons that choose who may ask about an upload as another.

Pure functions; the sender turns their output into Bot Connector calls.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bot.core import text
from bot.core.model import ScopeOffer
from bot.teams import text as teams_text
from bot.teams.translate import FEEDBACK_VERB, SCOPE_VERB, feedback_data, scope_data
from rag.types import Citation

# Teams refuses a message above 40 KB of UTF-16 (docs: "Format your bot messages"), card included.
# Splitting well below that keeps each message readable and leaves room for the card.
MAX_MESSAGE_CHARS = 6000
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"  # Action.Execute (the 👍/👎 buttons) needs 1.4

_ANCHOR = re.compile(r"<a\b([^>]*)>(.*?)</a\s*>", re.I | re.S)
_ANCHOR_TAG = re.compile(r"</?a\b[^>]*>", re.I)  # one without its pair
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_INLINE_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?([^\s)>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^( {0,3})\[([^\]\n]+)\]:", re.M)


def teams_markdown(md: str) -> str:
    """Our Markdown (`*bold*`, `_italic_`, one line per line) → the subset Teams renders.

    Teams reads `*x*` as italic and `**x**` as bold, and joins single line breaks: paragraphs need a blank
    line between them. Links are shown with their targets (see `shown_links`).
    """
    out = shown_links(md)
    out = re.sub(r"(?<![*\w])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![*\w])", r"**\1**", out)
    return re.sub(r"(?<!\n)\n(?!\n)", "\n\n", out)


def shown_links(md: str) -> str:
    """Every link in a reply written as `text (url)`, which Teams shows as the text and then the URL.

    Replies quote documents and the model, and Teams renders both Markdown and HTML links: as link
    text, `[the IT portal](https://evil…)` would show only "the IT portal". What no pattern here
    matches cannot become a link either: an inline link needs `](`, a reference link needs its
    `[ref]:` definition, and both are escaped.
    """
    out = _ANCHOR.sub(lambda m: _shown(m.group(2), _href(m.group(1))), md)
    out = _ANCHOR_TAG.sub(lambda m: f" ({href})" if (href := _href(m.group())) else "", out)
    out = _INLINE_LINK.sub(lambda m: _shown(m.group(1), m.group(2)), out)
    out = out.replace("](", "]\\(")
    return _REFERENCE_DEFINITION.sub(lambda m: f"{m.group(1)}\\[{m.group(2)}\\]:", out)


def _shown(label: str, url: str) -> str:
    label = label.strip()
    return f"{label} ({url})" if label and url and label != url else label or url


def _href(attributes: str) -> str:
    found = _HREF.search(attributes)
    return next((g for g in found.groups() if g is not None), "") if found else ""


def split_message(body: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Cut a long reply into messages of at most `limit` characters, at paragraph, line or word ends."""
    parts: list[str] = []
    rest = body.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), 0) or max(window.rfind("\n"), 0) or max(window.rfind(" "), 0)
        if cut < limit // 2:  # no good break near the end: cut at the limit
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


def sources_card(citations: Sequence[Citation], *, ref: str, feedback: bool) -> dict[str, Any] | None:
    """An Adaptive Card listing each cited file with its page or section, and the 👍/👎 buttons."""
    if not citations and not feedback:
        return None
    body: list[dict[str, Any]] = []
    if citations:
        body.append({"type": "TextBlock", "text": text.SOURCES_TITLE, "weight": "Bolder", "wrap": True})
        body.extend(_citation_block(c) for c in citations)
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
    }
    if feedback:
        card["actions"] = [
            _feedback_action(text.FEEDBACK_UP, "up", ref),
            _feedback_action(text.FEEDBACK_DOWN, "down", ref),
        ]
    return {"contentType": ADAPTIVE_CARD, "content": card}


def scope_card(offer: ScopeOffer) -> dict[str, Any]:
    """Who may ask about an upload's documents: everyone in the workspace, or only its sender
    (Action.Execute, answered by an `adaptiveCard/action` invoke naming the upload and the choice).
    Teams has no channel picker for a bot in personal chat: the card says how to keep a document for
    one channel instead."""
    how = {"type": "TextBlock", "text": teams_text.SCOPE_CHANNEL_HOW, "wrap": True, "isSubtle": True}
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": [how],
        "actions": [
            _scope_action(teams_text.SCOPE_WORKSPACE, offer.key, "workspace"),
            _scope_action(teams_text.SCOPE_PRIVATE, offer.key, "private"),
        ],
    }
    return {"contentType": ADAPTIVE_CARD, "content": card}


def _scope_action(title: str, key: str, choice: str) -> dict[str, Any]:
    return {"type": "Action.Execute", "title": title, "verb": SCOPE_VERB, "data": scope_data(key, choice)}


def _citation_block(citation: Citation) -> dict[str, Any]:
    name = _card_escape(citation.document)
    shown = f"[{name}]({citation.url})" if citation.url else f"**{name}**"
    where = f" — {_card_escape(citation.locator)}" if citation.locator else ""
    return {
        "type": "TextBlock",
        "text": f"[{citation.number}] {shown}{where}",
        "wrap": True,
        "spacing": "Small",
    }


def _feedback_action(title: str, vote: str, ref: str) -> dict[str, Any]:
    return {
        "type": "Action.Execute",
        "title": title,
        "verb": FEEDBACK_VERB,
        "data": feedback_data(vote, ref),  # type: ignore[arg-type]
    }


def _card_escape(value: str) -> str:
    """Keep a file name such as `notes_*draft*.md` from turning into Markdown in the card."""
    return re.sub(r"([*_\[\]`])", r"\\\1", value)
