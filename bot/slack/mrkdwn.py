"""Our Markdown → Slack mrkdwn, and cutting long text into pieces Slack accepts.

The core writes Markdown where `*x*` is bold (as Slack has it) and `_x_` italic; answers from the
model add CommonMark: `**bold**`, `# headings`, `[label](url)`, `- lists`, fenced code. Slack needs
`•` bullets and `&`, `<`, `>` escaped everywhere except in its own markup; links from answers are
shown as `label (<url>)`, so that their text cannot hide where they lead.
"""

from __future__ import annotations

import re
from urllib.parse import quote

SECTION_LIMIT = 3000  # characters in one section block's text (Block Kit's limit)

_CODE = re.compile(r"```[^\n`]*\n?.*?(?:```|\Z)|`[^`\n]+`", re.S)
_LINK = re.compile(r"!?\[([^\]\n]+)\]\(\s*<?([^\s)>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__", re.S)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.M)
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.M)
_TOKEN = re.compile("\x00(\\d+)\x00")
# The end of a partial answer that may still become a link: `[label`, `[label]`, `[label](url`, `<url`.
_OPEN_TAIL = re.compile(r"(?:!?\[[^\]\n]*(?:\](?:\([^)\n]*)?)?|<[^>\n]*)\Z")
_ANGLE = re.compile(r"(?<!\\)<")


def to_mrkdwn(markdown: str) -> str:
    """Convert, leaving code (inline and fenced) as it is apart from Slack's escaping."""
    out: list[str] = []
    pos = 0
    for m in _CODE.finditer(markdown):
        out.append(_convert_prose(markdown[pos : m.start()]))
        out.append(_convert_code(m.group()))
        pos = m.end()
    out.append(_convert_prose(markdown[pos:]))
    return "".join(out)


def to_stream_markdown(markdown: str, *, partial: bool = False) -> str:
    """Our Markdown as Slack's streaming methods take it (Slack renders the Markdown itself): links
    show their target, `label (<url>)`, and `<…>` that is not a URL stays text, so no `<!here>` or
    `<@U…>` from a document or the model becomes a mention. `partial`: the answer is still being
    written, and a link at its end is held back, so that each text sent extends the one before."""
    if partial:
        tail = _OPEN_TAIL.search(markdown)
        markdown = markdown[: tail.start()] if tail else markdown
    out: list[str] = []
    pos = 0
    for m in _CODE.finditer(markdown):
        out.append(_stream_prose(markdown[pos : m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(_stream_prose(markdown[pos:]))
    return "".join(out)


def _stream_prose(text: str) -> str:
    links: list[str] = []

    def keep(markup: str) -> str:
        links.append(markup)
        return f"\x00{len(links) - 1}\x00"

    text = text.replace("\x00", "")
    text = _LINK.sub(lambda m: keep(_shown_link(m.group(2), m.group(1))), text)
    text = _AUTOLINK.sub(lambda m: keep(_shown_link(m.group(1), "")), text)
    text = _ANGLE.sub(r"\\<", text)  # CommonMark's escape: shown as "<", read as no markup
    return _TOKEN.sub(lambda m: links[int(m.group(1))], text)


def _shown_link(url: str, label: str) -> str:
    """`label (<url>)` in Markdown: the label, then the URL itself as an autolink."""
    target = f"<{_slack_url(url).replace('&amp;', '&')}>" if _AUTOLINK.fullmatch(f"<{url}>") else url
    label = _unbold(label.strip()).replace("<", "\\<")
    return f"{label} ({target})" if label and label != url else target


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def split(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Cut text into pieces of at most `limit` characters at paragraph, line or word boundaries.

    Never inside a `<url|label>` link; a code block cut in two is closed and reopened so both pieces
    render as code.
    """
    if limit < 64:
        raise ValueError("limit too small to split sensibly")
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut_point(rest, limit - 8)  # room to close a code block
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n").lstrip(" ")
        if head.count("```") % 2 == 1:
            head += "\n```"
            rest = "```\n" + rest
        pieces.append(head)
    pieces.append(rest)
    return [p for p in pieces if p.strip()] or [""]


def _convert_code(code: str) -> str:
    if code.startswith("```"):
        # Slack ignores a language name after the fence and would show it as code: drop it.
        code = re.sub(r"\A```[^\n`]*\n?", "```\n", code, count=1)
    return escape(code)


def _convert_prose(text: str) -> str:
    links: list[str] = []

    def keep(slack_markup: str) -> str:
        links.append(slack_markup)
        return f"\x00{len(links) - 1}\x00"

    text = text.replace("\x00", "")  # the links' placeholder below: text of its own cannot forge one
    text = _LINK.sub(lambda m: keep(_link(m.group(2), m.group(1))), text)
    text = _AUTOLINK.sub(lambda m: keep(_link(m.group(1), "")), text)
    text = escape(text)
    text = re.sub(r"^&gt;", ">", text, flags=re.M)  # a leading > is a quote in both syntaxes
    text = _RULE.sub("──────────", text)
    text = _HEADING.sub(lambda m: f"*{_unbold(m.group(1))}*", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    text = _STRIKE.sub(r"~\1~", text)
    return _TOKEN.sub(lambda m: links[int(m.group(1))], text)


def labelled_link(url: str, label: str) -> str:
    """`<url|label>`: only for links threadwise makes itself (a cited file's permalink), never for
    one from a document or the model, whose text could name a different place than it goes to."""
    return f"<{_slack_url(url)}|{escape(label.strip()).replace('|', '¦')}>"


def _link(url: str, label: str) -> str:
    """A link from an answer, shown with its target: `label (<url>)`, which Slack displays as the
    label and then the URL itself. Written as `<url|label>`, `[the IT portal](https://evil…)` in a
    document would show as "the IT portal" and lead elsewhere."""
    target = f"<{_slack_url(url)}>"
    label = escape(_unbold(label.strip()))
    return f"{label} ({target})" if label and label != url else target


def _slack_url(url: str) -> str:
    # Inside <…> a URL may not contain |, < or > (percent-encode them); & is escaped as Slack does.
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~-._").replace("&", "&amp;")


def _unbold(text: str) -> str:
    return text.replace("**", "").replace("__", "")


def _cut_point(text: str, limit: int) -> int:
    window = text[:limit]
    for sep in ("\n\n", "\n", " "):
        at = window.rfind(sep)
        if at >= limit // 3:
            return _outside_link(text, at)
    return _outside_link(text, limit)


def _outside_link(text: str, at: int) -> int:
    """Move a cut back before a `<…>` it would fall inside of (unless that leaves nothing)."""
    opening = text.rfind("<", 0, at)
    if opening > 0 and text.rfind(">", opening, at) == -1 and text.find(">", at) != -1:
        return opening
    return at
