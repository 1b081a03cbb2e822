"""Markdown and reStructuredText: one Section per heading, with its heading path and line range."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.extract.common import _line_section, _text_lines, _Upload
from rag.types import Section


@dataclass(frozen=True)
class _Heading:
    line: int  # 0-based index of the heading's first line (the overline for RST)
    level: int
    title: str


def _headed_sections(lines: list[str], headings: list[_Heading]) -> list[Section]:
    """Text before the first heading, then one Section per heading up to the next one."""
    sections: list[Section | None] = [_line_section(lines, 0, headings[0].line if headings else len(lines))]
    path: list[_Heading] = []
    for position, heading in enumerate(headings):
        path = [*(h for h in path if h.level < heading.level), heading]
        end = headings[position + 1].line if position + 1 < len(headings) else len(lines)
        sections.append(_line_section(lines, heading.line, end, " > ".join(h.title for h in path)))
    return [section for section in sections if section is not None]


_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# Lines that cannot be the text of a setext heading (lists, quotes, tables, indented code).
_NOT_SETEXT_TEXT = re.compile(r"^( {4,}|\t| {0,3}([-+*>|]|\d+[.)])(\s|$))")
# Neither part may contain its own opening bracket, so a failed match ends at the next one: a title of
# 100,000 unclosed `[`s is one pass, not 100,000 scans to the end of the line.
_MD_LINK = re.compile(r"\[([^\[\]]*)\]\([^()]*\)")


def _parse_markdown(upload: _Upload) -> list[Section]:
    lines = _text_lines(upload)
    return _headed_sections(lines, _markdown_headings(lines))


def _markdown_headings(lines: list[str]) -> list[_Heading]:
    headings: list[_Heading] = []
    fence = ""
    previous_is_text = False  # the previous line could be the text of a setext heading
    for index in range(_front_matter_end(lines), len(lines)):
        line = lines[index]
        if fence:
            fence = "" if _closes_fence(line, fence) else fence
            previous_is_text = False
            continue
        opening = _FENCE_OPEN.match(line)
        atx = _ATX_HEADING.match(line)
        if opening:
            fence = opening.group(1)
        elif atx and _atx_text(atx.group(2) or ""):
            headings.append(_Heading(index, len(atx.group(1)), _clean_title(_atx_text(atx.group(2)))))
        elif previous_is_text and (underline := _SETEXT_UNDERLINE.match(line)):
            level = 1 if underline.group(1).startswith("=") else 2
            headings.append(_Heading(index - 1, level, _clean_title(lines[index - 1])))
            previous_is_text = False
            continue
        previous_is_text = bool(line.strip()) and not (opening or atx or _NOT_SETEXT_TEXT.match(line))
    return headings


def _front_matter_end(lines: list[str]) -> int:
    """Skip a YAML front-matter block so its closing `---` is not read as a setext underline."""
    if not lines or lines[0].strip() != "---":
        return 0
    for index in range(1, min(len(lines), 200)):
        if lines[index].strip() in ("---", "..."):
            return index + 1
    return 0


def _closes_fence(line: str, fence: str) -> bool:
    """A closing fence: up to 3 spaces, then at least as many of the same character, nothing else."""
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return indent <= 3 and len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def _atx_text(text: str) -> str:
    """Heading text without an optional closing run of #s ("## Setup ##")."""
    text = text.rstrip()
    bare = text.rstrip("#")
    return bare.rstrip() if bare != text and bare.endswith((" ", "\t")) else text


def _clean_title(text: str) -> str:
    title = _MD_LINK.sub(r"\1", text.strip()).replace("`", "").replace("**", "")
    return " ".join(title.split())


_RST_ADORNMENT = re.compile(r"""^([=\-~^*#"+])\1+[ \t]*$""")


def _parse_rst(upload: _Upload) -> list[Section]:
    lines = _text_lines(upload)
    return _headed_sections(lines, _rst_headings(lines))


def _rst_headings(lines: list[str]) -> list[_Heading]:
    """Titles are underlined (optionally also overlined); a level per adornment style, in order of
    first appearance, as docutils does."""
    styles: list[tuple[str, bool]] = []
    headings: list[_Heading] = []
    index = 0
    while index < len(lines):
        found = _rst_title_at(lines, index)
        if found is None:
            index += 1
            continue
        style, title, height = found
        if style not in styles:
            styles.append(style)
        headings.append(_Heading(index, styles.index(style) + 1, title))
        index += height
    return headings


def _rst_title_at(lines: list[str], index: int) -> tuple[tuple[str, bool], str, int] | None:
    """(style, title, lines used) when a title starts at `index`. Titles follow a blank line."""
    if index > 0 and lines[index - 1].strip():
        return None
    window = [*lines[index : index + 3], "", ""]
    over = _RST_ADORNMENT.match(window[0])
    if over and window[1].strip() and not _RST_ADORNMENT.match(window[1]):
        under = _RST_ADORNMENT.match(window[2])
        title = window[1].strip()
        if under and under.group(1) == over.group(1) and len(window[0].rstrip()) >= len(title):
            return (over.group(1), True), title, 3
        return None
    under = _RST_ADORNMENT.match(window[1])
    text = window[0]
    if over or not under or not text.strip() or text[0].isspace():
        return None
    if len(window[1].rstrip()) < len(text.rstrip()):
        return None
    return (under.group(1), False), text.strip(), 2
