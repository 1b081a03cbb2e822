"""The user-visible strings of the chat core (Markdown); each platform package words what only it says."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from bot.core.model import ScopeOffer, Working
from rag.names import shown
from rag.scopes import WORKSPACE, describe
from rag.types import Citation, DocumentInfo, IngestResult, KbStats

THINKING = "_Searching your documents…_"
READING = "_Reading {names}…_"

HELP = """*threadwise* answers questions from your team's documents, with sources.

• *Ask* — {ask_how}. I answer in the thread and cite the documents I used.
• *Add documents* — send files to me in a direct message (PDF, Word, Markdown, HTML, text, CSV, JSON, \
YAML, code; up to {max_mb} MB each), or share them in a channel with a mention of me, where your \
admin allows it: then only that channel can ask about them. Buttons under my reply to a direct message \
choose who can ask: the whole workspace, or only you. Sending a file with the same name again replaces \
your earlier version.
• `docs` — list the documents you can ask about here.
• `forget NAME` — delete a document (whoever uploaded it, or an admin).
• `stats` — how big the knowledge base is.
• `help` — this message."""

NO_DOCUMENTS = "The knowledge base is empty. Send me a document in a direct message to get started."
FORGOTTEN = "Deleted *{name}* ({passages}). It no longer appears in answers."
FORGET_USAGE = "Say `forget NAME` with the document's name, as `docs` lists it."
FORGET_DENIED = "Only the person who uploaded *{name}* ({uploader}) or an admin can delete it."
NO_SUCH_DOCUMENT = "There is no document called {name}. Say `docs` to see the list."
# A document of that name (or one that reads alike) that the uploader may not see where they are:
# neither its name, nor its owner, nor whether it holds the same bytes is said.
NAME_TAKEN = (
    "*{name}* reads like the name of a document you cannot see here, so yours was not added: "
    "send it under another name."
)
REPLACE_DENIED = (
    "*{name}* is already in the knowledge base, uploaded by {uploader}: only they or an admin can "
    "replace it, so their version stays. To add yours as well, send it under another name."
)
FILES_ONLY_IN_DM = (
    "To add a document, mention me in the message that shares it (then only this channel can ask "
    "about it), or send it to me in a direct message."
)
CHANNEL_UPLOADS_OFF = "Files shared in channels are not read here: send them to me in a direct message."
RATE_LIMITED = "You're sending questions faster than I can keep up. Please try again in {seconds} s."
COMMANDS_RATE_LIMITED = "You're sending commands faster than I can keep up. Please try again in {seconds} s."
INTERNAL_ERROR = (
    "Sorry — something went wrong on my side while {doing}. "
    "It's logged (ref `{ref}`); please try again in a minute."
)
TIMED_OUT = (
    "Sorry — {doing} took longer than I allow, so I stopped. "
    "It's logged (ref `{ref}`); please try again, or with a smaller file."
)
CHOICE_EXPIRED = "These buttons no longer work. To change who may ask about a document, send it to me again."
CHOICE_NOT_YOURS = "Only the person who sent these documents, or an admin, can choose who may ask about them."
FILE_FAILED = "{name}: something went wrong on my side reading it (ref `{ref}`)."
EMPTY_QUESTION = "What would you like to know? Ask me a question about your documents, or say `help`."

DOING = {"ask": "answering", "ingest": "reading your file", "command": "running that command"}


def working(state: Working) -> str:
    """The working message: what the bot is doing while the job runs."""
    return READING.format(names=", ".join(state.files)) if state.kind == "ingest" else THINKING


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def help_text(ask_how: str, max_mb: float) -> str:
    """`help`, with how to ask on the platform it is shown on (each platform words that itself)."""
    return HELP.format(ask_how=ask_how, max_mb=f"{max_mb:g}")


def documents_list(docs: Sequence[DocumentInfo], identities: Mapping[str, str] | None = None) -> str:
    """The document list; with `identities`, each document's identity under it (`docs --verbose`)."""
    if not docs:
        return NO_DOCUMENTS
    lines = [f"*{plural(len(docs), 'document')}* in the knowledge base:"]
    for d in docs:
        when = dt.datetime.fromtimestamp(d.uploaded_at, dt.UTC).strftime("%Y-%m-%d")
        who = f", by {d.uploader}" if d.uploader else ""
        seen = "" if d.scope == WORKSPACE else f" ({describe(d.scope)})"
        lines.append(f"• {literal(d.name)} — {plural(d.chunks, 'passage')}{who}, {when}{seen}")
        if identities is not None:
            lines.append(f"    about: {identities.get(d.name) or '(nothing stated)'}")
    return "\n".join(lines)


def literal(name: str) -> str:
    """A document name as code, so that `forget` can be given exactly what the list shows: as
    emphasis, `_draft_.md` would show as `draft.md`. A name with a backtick cannot be code."""
    return name if "`" in name else f"`{name}`"


def short(document: str) -> str:
    """A name as a reply echoes it: a long one shortened, so that echoing it stays one message."""
    return shown(document)


def ingest_summary(results: Sequence[IngestResult], errors: Sequence[str], *, place: str = "") -> str:
    """What became of each file, and who may ask about it (`place`: where it was sent, a scope)."""
    lines = []
    for r in results:
        if r.status == "unchanged":
            said = f"✅ *{short(r.document)}* is already in the knowledge base, unchanged."
        elif r.status == "rescoped":
            said = f"✅ *{short(r.document)}* is already in the knowledge base: who may see it changed."
        else:
            verb = "Replaced" if r.status == "replaced" else "Added"
            passages = plural(r.chunks, "passage")
            said = f"✅ {verb} *{short(r.document)}*: {passages} in {r.seconds:.1f} s."
        lines.append(f"{said} {who_may_ask(r.scope, place)}")
    lines.extend(f"⚠️ {e}" for e in errors)
    return "\n".join(lines)


def who_may_ask(scope: str, place: str) -> str:
    """Who may ask about a document of `scope`, as said where it was sent (`place`)."""
    kind, _, owner = scope.partition(":")
    if kind == "private":
        return "Only you can ask about it, here."
    if kind == "channel":
        return (
            "Only this channel can ask about it."
            if scope == place
            else f"Only channel {owner} can ask about it."
        )
    return "Everyone in the workspace can ask about it."


def with_offer(summary: str, offer: ScopeOffer | None) -> str:
    """An upload's reply with the line that goes with its buttons: what happens without a choice."""
    if offer is None:
        return summary
    them = "it" if len(offer.names) == 1 else "them"
    if not offer.default:
        return f"{summary}\n👇 To change who can ask about {them}, choose below."
    later = _scope_phrase(offer.default)
    return (
        f"{summary}\n👇 Choose who can ask about {them}. Without a choice, in {offer.minutes:g} "
        f"minutes {later} will be able to."
    )


def scope_chosen(
    names: Sequence[str], scope: str, *, place: str, by_default: bool, gone: Sequence[str] = ()
) -> str:
    """What a choice (or the default, when no one chose in time) did; `gone`: the documents it
    could not change, deleted (or no longer the sender's) since the upload."""
    if not names and gone:
        listed = ", ".join(f"*{short(n)}*" for n in gone)
        were = "was" if len(gone) == 1 else "were"
        return f"Nothing changed: {listed} {were} deleted or replaced since."
    if not names:
        return "Nothing changed: who can ask about these documents was already chosen."
    listed = ", ".join(f"*{short(n)}*" for n in names)
    first = "No choice was made in time, so the default applies: " if by_default else ""
    return f"✅ {first}{listed}. {who_may_ask(scope, place)}"


def _scope_phrase(scope: str) -> str:
    kind, _, owner = scope.partition(":")
    if kind == "private":
        return "only you"
    if kind == "channel":
        return f"only channel {owner}"
    return "everyone in the workspace"


def ingest_progress(document: str, done: int, total: int) -> str:
    pct = int(100 * done / total) if total else 100
    return f"_Reading {short(document)}… {pct}% ({done}/{total} passages)_"


def stats_text(stats: KbStats) -> str:
    return f"*{stats.kb}*: {plural(stats.documents, 'document')}, {plural(stats.chunks, 'passage')}."


def sources_markdown(citations: Sequence[Citation]) -> str:
    if not citations:
        return ""
    lines = ["*Sources*"]
    for c in citations:
        name = f"[{c.document}]({c.url})" if c.url else c.document
        where = f" — {c.locator}" if c.locator else ""
        lines.append(f"[{c.number}] {name}{where}")
    return "\n".join(lines)


FILE_TOO_LARGE = "{name} is larger than the {limit} limit. Please upload a smaller file or split it."

# Under an answer, on every platform that shows them.
SOURCES_TITLE = "Sources"
FEEDBACK_UP = "👍 Helpful"
FEEDBACK_DOWN = "👎 Not helpful"
FEEDBACK_THANKS = "Thanks for the feedback — it helps me get better."
