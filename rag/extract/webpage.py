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
    for string, (block, new_cell) in _html_strings(soup):
        if block is not owner:
            yield from _html_flush(owner, parts)
            owner, parts = block, []
        elif new_cell is not cell and parts:
            parts.append(" | ")
        cell = new_cell
        parts.append(string)
    yield from _html_flush(owner, parts)


_Owner = tuple[Tag | None, Tag | None]  # nearest block-level ancestor, and the table cell on the way


def _html_strings(soup: BeautifulSoup) -> Iterator[tuple[str, _Owner]]:
    """Each text string with its owner, in document order. An element's owner is derived from its
    parent's, so the walk is linear in the size of the page: walking up from every string to its
    block would take quadratic time on deeply nested markup (20,000 nested <span>s: minutes)."""
    owners: dict[int, _Owner] = {id(soup): (None, None)}
    for node in soup.descendants:
        parent = owners[id(node.parent)]
        if isinstance(node, Tag):
            owners[id(node)] = _html_owner(node, parent)
        elif not isinstance(node, _HTML_NOT_TEXT):
            yield str(node), parent


def _html_owner(tag: Tag, parent: _Owner) -> _Owner:
    if tag.name in _HTML_HEADINGS or tag.name in _HTML_BLOCKS:
        return tag, None
    if tag.name in ("td", "th"):
        return parent[0], tag
    return parent


def _html_flush(owner: Tag | None, parts: list[str]) -> Iterator[tuple[int, str, str]]:
    name = owner.name if owner is not None else ""
    text = "".join(parts)
    text = text.strip("\n") if name == "pre" else " ".join(text.split())
    if text.strip(" |"):
        yield _HTML_HEADINGS.get(name, 0), text, name
