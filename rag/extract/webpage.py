"""Web pages (HTML): block-level text under the h1-h6 heading path; scripts and page furniture dropped."""

from __future__ import annotations

from collections.abc import Iterator

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, ProcessingInstruction, Tag

from rag.extract.common import _read_text, _Upload
from rag.extract.outline import _Outline
from rag.types import Section

_HTML_DROP = [
    *("script", "style", "noscript", "template", "svg", "iframe", "object"),  # not prose
    *("head", "title", "nav", "footer"),  # page furniture; <title> is read separately
]
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_HTML_BLOCKS = frozenset(
    {
        *("p", "div", "pre", "blockquote", "address", "details", "summary", "form", "fieldset"),
        *("li", "ul", "ol", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "caption"),
        *("section", "article", "main", "header", "aside", "figure", "figcaption", "body", "html"),
    }
)
_HTML_TIGHT = frozenset({"li", "tr", "dt", "dd"})
_HTML_NOT_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)


def _parse_html(upload: _Upload) -> list[Section]:
    decoded = _read_text(upload)
    # Legacy-encoded pages usually declare their charset; let BeautifulSoup honour the <meta>.
    markup: str | bytes = decoded.text if decoded.encoding.startswith("utf") else upload.data
    soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_HTML_DROP):
        if isinstance(tag, Tag) and not tag.decomposed:
            tag.decompose()
    outline = _Outline()
    blocks = list(_html_blocks(soup))
    if title and not any(level == 1 for level, _, _ in blocks):
        outline.heading(1, title)
    for level, text, tag_name in blocks:
        if level:
            outline.heading(level, text)
        else:
            outline.block(f"- {text}" if tag_name == "li" else text, tight=tag_name in _HTML_TIGHT)
    outline.close()
    return outline.sections


def _html_blocks(soup: BeautifulSoup) -> Iterator[tuple[int, str, str]]:
    """(heading level or 0, text, block tag name) in document order. Strings are grouped by their
    nearest block ancestor; table cells of one row are joined with " | "."""
    owner: Tag | None = None
    cell: Tag | None = None
    parts: list[str] = []
    for string in soup.find_all(string=True):
        if isinstance(string, _HTML_NOT_TEXT):
            continue
        block, new_cell = _html_owner(string.parent)
        if block is not owner:
            yield from _html_flush(owner, parts)
            owner, parts = block, []
        elif new_cell is not cell and parts:
            parts.append(" | ")
        cell = new_cell
        parts.append(str(string))
    yield from _html_flush(owner, parts)


def _html_owner(tag: Tag | None) -> tuple[Tag | None, Tag | None]:
    """Nearest block-level ancestor (heading, paragraph, row...) and the table cell on the way."""
    cell: Tag | None = None
    while tag is not None:
        if tag.name in ("td", "th") and cell is None:
            cell = tag
        if tag.name in _HTML_HEADINGS or tag.name in _HTML_BLOCKS:
            return tag, cell
        tag = tag.parent
    return None, cell


def _html_flush(owner: Tag | None, parts: list[str]) -> Iterator[tuple[int, str, str]]:
    name = owner.name if owner is not None else ""
    text = "".join(parts)
    text = text.strip("\n") if name == "pre" else " ".join(text.split())
    if text.strip(" |"):
        yield _HTML_HEADINGS.get(name, 0), text, name
