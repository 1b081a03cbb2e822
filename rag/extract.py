"""Turn an uploaded file's bytes into Sections: text with its page, heading path or line range.

Two entry points. `check_metadata` runs on the name and size alone, before anything is downloaded.
`extract` repeats that check, confirms from the bytes that the content is what the name says, and
parses it. Every bad input ends as a UserFacingError whose message names the file, says what is wrong
and what to do; no parser exception escapes (uploads are untrusted and parsers raise anything).

Pure functions: no I/O besides reading the given bytes, no settings, no logging of contents. CPU-heavy
(PDF parsing), so callers run it off the event loop.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
import yaml
from bs4 import BeautifulSoup, Comment, Declaration, Doctype, ProcessingInstruction, Tag
from docx import Document as load_docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from rag import filetypes
from rag.errors import UserFacingError
from rag.types import ExtractedDocument, Section

SUPPORTED_EXTENSIONS: frozenset[str] = filetypes.SUPPORTED_EXTENSIONS

_CHECK_FILE = "Please check you picked the right file."
_KIND_LABEL = {
    "pdf": "a PDF",
    "docx": "a Word document",
    "html": "a web page (HTML)",
    "markdown": "Markdown",
    "rst": "reStructuredText",
    "text": "text",
    "json": "JSON",
    "yaml": "YAML",
    "csv": "a CSV table",
    "code": "source code",
}


# --- the public API ----------------------------------------------------------------------------


def check_metadata(name: str, size: int | None, *, allowed_types: frozenset[str], max_bytes: int) -> str:
    """Check name and size before any download; return the lower-case extension without the dot."""
    allowed = frozenset(t.strip().lower().lstrip(".") for t in allowed_types) & SUPPORTED_EXTENSIONS
    ext = filetypes.extension_of(name)
    if not ext:
        raise UserFacingError(
            f"{name} has no file extension, so I can't tell what it is. {_readable(allowed)}"
        )
    if ext not in SUPPORTED_EXTENSIONS:
        raise UserFacingError(f"{name}: .{ext} files are not supported. {_readable(allowed)}")
    if ext not in allowed:
        raise UserFacingError(f"{name}: .{ext} files are not allowed here. {_readable(allowed, 'Allowed')}")
    if size is not None and size > max_bytes:
        raise UserFacingError(
            f"{name} is {filetypes.human_size(size, round_up=True)}; the limit is "
            f"{filetypes.human_size(max_bytes)}. Please upload a smaller file or split it."
        )
    if size == 0:
        raise UserFacingError(f"{name} is empty. Please upload a file with some text in it.")
    return ext


def extract(name: str, data: bytes, *, allowed_types: frozenset[str], max_bytes: int) -> ExtractedDocument:
    """Check, sniff and parse an upload into Sections. Raises UserFacingError for every bad input."""
    ext = check_metadata(name, len(data), allowed_types=allowed_types, max_bytes=max_bytes)
    upload = _Upload(name=name, ext=ext, data=data, max_bytes=max_bytes)
    kind = filetypes.kind_of(ext)
    try:
        sections = _PARSERS[kind](upload)
    except UserFacingError:
        raise
    except Exception as exc:  # hostile or broken files make parsers raise anything at all
        raise UserFacingError(
            f"{name} could not be read as {_KIND_LABEL[kind]} (it may be damaged). "
            "Please check the file, or save it again and re-upload it."
        ) from exc
    kept = tuple(section for section in sections if section.text.strip())
    if not kept:
        raise _no_text(name, kind)
    return ExtractedDocument(name=name, kind=kind, sections=kept)


@dataclass(frozen=True)
class _Upload:
    name: str
    ext: str
    data: bytes
    max_bytes: int


def _readable(allowed: frozenset[str], label: str = "I can read") -> str:
    if not allowed:
        return "No file types are enabled here; please ask an admin."
    return f"{label}: {', '.join('.' + ext for ext in sorted(allowed))}."


def _no_text(name: str, kind: str) -> UserFacingError:
    if kind in ("pdf", "docx"):
        return UserFacingError(
            f"{name} has no text I can read (is it a scanned image? I can't read text in pictures). "
            "Please upload a version with selectable text."
        )
    return UserFacingError(f"{name} has no text I can read. Please upload a file with some text in it.")


def _not_a(name: str, what: str, data: bytes) -> UserFacingError:
    label = filetypes.describe_binary(data)
    if label is None and filetypes.decode_text(data[:4096]) is not None:
        label = "a text file"
    why = f" (it looks like {label})" if label else ""
    return UserFacingError(f"{name} does not look like {what}{why}. {_CHECK_FILE}")


# --- text formats: decoding and line sections --------------------------------------------------

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_TXT_SECTION_CHARS = 2000
_CODE_SECTION_LINES = 60
_AST_MAX_CHARS = 1_000_000


def _read_text(upload: _Upload) -> filetypes.DecodedText:
    """Decoded text of a text-format upload; a renamed image, PDF or program is refused."""
    label = filetypes.strong_magic(upload.data)
    decoded = None if label else filetypes.decode_text(upload.data)
    if decoded is None:
        label = label or filetypes.describe_binary(upload.data)
        why = f"it looks like {label}" if label else "it seems to contain binary data"
        raise UserFacingError(f"{upload.name} does not look like a text file ({why}). {_CHECK_FILE}")
    return decoded


def _text_lines(upload: _Upload) -> list[str]:
    """Lines as an editor numbers them: any newline convention, ANSI colour codes removed."""
    text = _read_text(upload).text
    text = _ANSI_ESCAPE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.split("\n")


def _line_section(lines: list[str], start: int, end: int, heading: str = "") -> Section | None:
    """Section of lines[start:end] (0-based, end exclusive), trimmed of blank edge lines."""
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    if start == end:
        return None
    text = "\n".join(lines[start:end])
    return Section(text=text, heading=heading, line_start=start + 1, line_end=end)


def _paragraph_spans(lines: list[str], start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """[start, end) spans of blank-line separated paragraphs."""
    spans: list[tuple[int, int]] = []
    begin: int | None = None
    stop = len(lines) if end is None else end
    for index in range(start, stop):
        if lines[index].strip():
            begin = index if begin is None else begin
        elif begin is not None:
            spans.append((begin, index))
            begin = None
    if begin is not None:
        spans.append((begin, stop))
    return spans


def _packed_sections(
    lines: list[str], spans: list[tuple[int, int]], size: Callable[[int, int], int], limit: int
) -> list[Section]:
    """Merge consecutive spans while their total size stays within `limit`; split larger ones."""
    pieces = [piece for span in spans for piece in _split_span(span, size, limit)]
    groups: list[tuple[int, int]] = []
    for begin, end in pieces:
        if groups and size(groups[-1][0], end) <= limit:
            groups[-1] = (groups[-1][0], end)
        else:
            groups.append((begin, end))
    sections = (_line_section(lines, begin, end) for begin, end in groups)
    return [section for section in sections if section is not None]


def _split_span(
    span: tuple[int, int], size: Callable[[int, int], int], limit: int
) -> Iterator[tuple[int, int]]:
    begin, end = span
    while begin < end:
        stop = begin + 1  # at least one line, however long
        while stop < end and size(begin, stop + 1) <= limit:
            stop += 1
        yield begin, stop
        begin = stop


def _char_size(lines: list[str]) -> Callable[[int, int], int]:
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    return lambda begin, end: offsets[end] - offsets[begin]


def _line_count(begin: int, end: int) -> int:
    return end - begin


def _parse_plain_text(upload: _Upload) -> list[Section]:
    lines = _text_lines(upload)
    return _packed_sections(lines, _paragraph_spans(lines), _char_size(lines), _TXT_SECTION_CHARS)


def _parse_code(upload: _Upload) -> list[Section]:
    lines = _text_lines(upload)
    if upload.ext == "py":
        sections = _python_sections(lines)
        if sections is not None:
            return sections
    return _code_blocks(lines, 0, len(lines))


def _code_blocks(lines: list[str], start: int, end: int) -> list[Section]:
    spans = _paragraph_spans(lines, start, end)
    return _packed_sections(lines, spans, _line_count, _CODE_SECTION_LINES)


def _python_sections(lines: list[str]) -> list[Section] | None:
    """One Section per top-level def/class (with its decorators and leading comments), module-level
    code in between as plain line blocks. None when the file does not parse (e.g. Python 2) or is
    too big to parse quickly (ast takes ~3 s per MB; files that large are generated code anyway)."""
    source = "\n".join(lines)
    if len(source) > _AST_MAX_CHARS:
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    sections: list[Section] = []
    done = 0
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list]) - 1
        first = _with_leading_comments(lines, first, floor=done)
        sections.extend(_code_blocks(lines, done, first))
        kind = "class" if isinstance(node, ast.ClassDef) else "def"
        section = _line_section(lines, first, node.end_lineno or node.lineno, heading=f"{kind} {node.name}")
        sections.extend([section] if section else [])
        done = node.end_lineno or node.lineno
    sections.extend(_code_blocks(lines, done, len(lines)))
    return sections


def _with_leading_comments(lines: list[str], first: int, *, floor: int) -> int:
    while first > floor and lines[first - 1].startswith("#"):
        first -= 1
    return first


# --- Markdown and reStructuredText: heading paths over line ranges ------------------------------


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
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


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


# --- structured documents: an outline of headings and blocks ------------------------------------


class _Outline:
    """Collects text blocks under the current heading path and closes a Section at each heading."""

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []
        self._blocks: list[str] = []
        self._tight = False
        self.sections: list[Section] = []

    def heading(self, level: int, title: str) -> None:
        self.close()
        self._path = [*(entry for entry in self._path if entry[0] < level), (level, title)]
        self._blocks.append(title)

    def block(self, text: str, *, tight: bool = False) -> None:
        """Add a paragraph; `tight` ones (list items, table rows) follow each other without a gap."""
        if not text.strip():
            return
        if self._blocks:
            self._blocks.append("\n" if tight and self._tight else "\n\n")
        self._blocks.append(text)
        self._tight = tight

    def close(self) -> None:
        text = "".join(self._blocks).strip()
        if text:
            self.sections.append(Section(text=text, heading=" > ".join(title for _, title in self._path)))
        self._blocks = []
        self._tight = False


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


_DOCX_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def _parse_docx(upload: _Upload) -> list[Section]:
    _check_docx_container(upload)
    document = load_docx(io.BytesIO(upload.data))
    outline = _Outline()
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            level = _docx_heading_level(item)
            if level and item.text.strip():
                outline.heading(level, " ".join(item.text.split()))
            else:
                outline.block(item.text)
        elif isinstance(item, Table):
            outline.block(_docx_table_text(item))
    outline.close()
    return outline.sections


def _check_docx_container(upload: _Upload) -> None:
    """A .docx is a zip; look at its directory before python-docx unpacks anything."""
    if not upload.data.startswith(b"PK\x03\x04"):
        raise _not_a(upload.name, "a Word (.docx) document", upload.data)
    try:
        with zipfile.ZipFile(io.BytesIO(upload.data)) as archive:
            problem = filetypes.zip_expansion_problem(
                archive, filetypes.ZipLimits.for_upload_limit(upload.max_bytes)
            )
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise UserFacingError(
            f"{upload.name} could not be read as a Word document (it may be damaged). "
            "Please open it in Word, save it again and re-upload it."
        ) from exc
    if problem:
        raise UserFacingError(
            f"{upload.name} {problem} when unpacked, so I'm refusing to open it (it looks like a zip bomb). "
            "If it is a real document, please split it or remove large embedded files."
        )
    if "word/document.xml" not in names:
        raise _not_a(upload.name, "a Word (.docx) document", upload.data)


def _docx_heading_level(paragraph: Paragraph) -> int | None:
    """Title and Heading 1 share the top level, so a document title does not prefix every path."""
    try:
        style_name = (paragraph.style.name or "") if paragraph.style is not None else ""
    except (KeyError, AttributeError, ValueError):
        return None
    if style_name.lower() == "title":
        return 1
    match = _DOCX_HEADING_STYLE.match(style_name.strip())
    return int(match.group(1)) if match else None


def _docx_table_text(table: Table) -> str:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is repeated once per grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


# --- data formats: JSON, YAML, CSV ---------------------------------------------------------------

_DATA_SECTION_CHARS = 2000
_MAX_NESTING = 64
_CSV_ROWS_PER_SECTION = 50
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][\w-]*$")


class _Flattener:
    """Renders nested data as `a.b[0].c: value` lines, within a budget of characters so a YAML alias
    bomb (a few KB that expand to gigabytes) is refused instead of expanded."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def lines(self, value: Any, path: str) -> list[str]:
        out: list[str] = []
        self._walk(value, path, out, 0)
        return out

    def _walk(self, value: Any, path: str, out: list[str], depth: int) -> None:
        if isinstance(value, dict | list) and value and depth < _MAX_NESTING:
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in pairs:
                self._walk(item, _child_path(path, key, isinstance(value, list)), out, depth + 1)
            return
        line = f"{path}: {_scalar(value, depth)}" if path else _scalar(value, depth)
        self.budget -= len(line) + 1
        if self.budget < 0:
            raise _DataTooBig
        out.append(line)


class _DataTooBig(Exception):
    pass


def _child_path(path: str, key: Any, in_list: bool) -> str:
    if in_list:
        return f"{path}[{key}]"
    text = str(key)
    if _SIMPLE_KEY.match(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text, ensure_ascii=False)}]"


def _scalar(value: Any, depth: int) -> str:
    if isinstance(value, dict | list):
        return "(nested too deeply)" if depth >= _MAX_NESTING else ("{}" if isinstance(value, dict) else "[]")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _data_sections(name: str, value: Any, budget: int, prefix: str = "") -> list[Section]:
    """One Section per top-level key (or run of array items), small neighbours merged."""
    flattener = _Flattener(budget)
    try:
        if isinstance(value, dict) and value:
            items = [
                (str(key), flattener.lines(item, _child_path("", key, False))) for key, item in value.items()
            ]
            return _grouped_data(items, prefix, ranges=False)
        if isinstance(value, list) and value:
            items = [(f"[{index}]", flattener.lines(item, f"[{index}]")) for index, item in enumerate(value)]
            return _grouped_data(items, prefix, ranges=True)
        return [Section(text="\n".join(flattener.lines(value, "")), heading=prefix)]
    except _DataTooBig:
        raise UserFacingError(
            f"{name} expands to far more text than its size when read (it may repeat content with "
            "aliases), so I'm refusing to read it. Please upload a plain export instead."
        ) from None


def _grouped_data(items: list[tuple[str, list[str]]], prefix: str, *, ranges: bool) -> list[Section]:
    groups: list[tuple[list[str], list[str]]] = []
    group_size = 0
    for label, lines in items:
        size = sum(len(line) + 1 for line in lines)
        if groups and group_size + size <= _DATA_SECTION_CHARS:
            groups[-1][0].append(label)
            groups[-1][1].extend(lines)
            group_size += size
        else:
            groups.append(([label], list(lines)))
            group_size = size
    return [
        Section(text="\n".join(lines), heading=_join_heading(prefix, _group_label(labels, ranges)))
        for labels, lines in groups
    ]


def _group_label(labels: list[str], ranges: bool) -> str:
    if len(labels) == 1:
        return labels[0]
    if ranges:
        return f"{labels[0]}-{labels[-1]}"
    joined = ", ".join(labels)
    return joined if len(joined) <= 80 else f"{labels[0]} … {labels[-1]}"


def _join_heading(prefix: str, label: str) -> str:
    return f"{prefix} > {label}" if prefix and label else prefix or label


def _expansion_budget(data: bytes) -> int:
    return 20 * len(data) + 1_000_000


def _parse_json(upload: _Upload) -> list[Section]:
    text = _read_text(upload).text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserFacingError(
            f"{upload.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
            "Please fix it and upload it again."
        ) from exc
    except RecursionError as exc:
        raise UserFacingError(f"{upload.name} is nested too deeply for me to read.") from exc
    return _data_sections(upload.name, value, _expansion_budget(upload.data))


def _parse_yaml(upload: _Upload) -> list[Section]:
    text = _read_text(upload).text
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same safe constructors, in C
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise UserFacingError(
            f"{upload.name} is not valid YAML ({_yaml_problem(exc)}). Please fix it and upload it again."
        ) from exc
    budget = _expansion_budget(upload.data)
    if len(documents) == 1:
        return _data_sections(upload.name, documents[0], budget)
    sections: list[Section] = []
    for number, document in enumerate(documents, start=1):
        added = _data_sections(upload.name, document, budget, prefix=f"document {number}")
        budget -= sum(len(section.text) + 1 for section in added)
        sections.extend(added)
    return sections


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "it could not be parsed"
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def _parse_csv(upload: _Upload) -> list[Section]:
    text = _read_text(upload).text
    reader = csv.reader(io.StringIO(text, newline=""), dialect=_csv_dialect(text))
    header: list[str] | None = None
    rows: list[tuple[int, int, str]] = []  # (first line, last line, rendered row)
    last_line = 0
    try:
        for row in reader:
            first, last_line = last_line + 1, reader.line_num
            if header is None:
                header = [cell.strip() for cell in row] if any(cell.strip() for cell in row) else None
            elif rendered := _csv_row(header, row):
                rows.append((first, last_line, rendered))
    except csv.Error as exc:
        raise UserFacingError(
            f"{upload.name} could not be read as CSV (line {reader.line_num}: {exc}). "
            "Please check the file and upload it again."
        ) from exc
    return _csv_sections(header or [], rows)


def _csv_dialect(text: str) -> type[csv.Dialect]:
    """Semicolon- and tab-separated exports are common; sniff, and fall back to plain commas."""
    try:
        return csv.Sniffer().sniff(text[:20_000], delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _csv_row(header: list[str], row: list[str]) -> str:
    pairs = [(_column_name(header, index), value.strip()) for index, value in enumerate(row)]
    return "; ".join(f"{name}: {value}" for name, value in pairs if value)


def _column_name(header: list[str], index: int) -> str:
    return header[index] if index < len(header) and header[index] else f"column {index + 1}"


def _csv_sections(header: list[str], rows: list[tuple[int, int, str]]) -> list[Section]:
    if not rows:
        columns = "; ".join(name for name in header if name)
        return [Section(text=f"Columns: {columns}", line_start=1, line_end=1)] if columns else []
    sections = []
    for offset in range(0, len(rows), _CSV_ROWS_PER_SECTION):
        group = rows[offset : offset + _CSV_ROWS_PER_SECTION]
        text = "\n".join(rendered for _, _, rendered in group)
        sections.append(Section(text=text, line_start=group[0][0], line_end=group[-1][1]))
    return sections


# --- PDF -----------------------------------------------------------------------------------------


class _PdfPasswordRequired(Exception):
    pass


def _parse_pdf(upload: _Upload) -> list[Section]:
    if filetypes.find_pdf_signature(upload.data) < 0:
        raise _not_a(upload.name, "a PDF", upload.data)
    pages = [_pdf_lines(text) for text in _pdf_page_texts(upload)]
    pages = _drop_running_lines(pages)
    return [Section(text=_join_pdf_lines(lines), page=number) for number, lines in enumerate(pages, start=1)]


def _pdf_page_texts(upload: _Upload) -> list[str]:
    """Text per page: pdfium first (fast, tolerant), pypdf when pdfium cannot open the file."""
    try:
        try:
            return _pdfium_texts(upload.data)
        except pdfium.PdfiumError as exc:
            if exc.err_code == pdfium_raw.FPDF_ERR_PASSWORD:
                raise _PdfPasswordRequired from exc
        except Exception:  # any pdfium failure: give pypdf a chance
            pass
        pages = _pypdf_texts(upload.data)
        if not pages:
            raise ValueError("no pages")
        return pages
    except _PdfPasswordRequired:
        raise UserFacingError(
            f"{upload.name} is password-protected; please upload an unprotected copy."
        ) from None
    except Exception as exc:
        raise UserFacingError(
            f"{upload.name} could not be read as a PDF (it may be damaged). "
            "Please open it, save or print it to a new PDF, and upload that."
        ) from exc


def _pdfium_texts(data: bytes) -> list[str]:
    document = pdfium.PdfDocument(data)  # an empty user password is tried by pdfium itself
    try:
        return [_pdfium_page_text(document, index) for index in range(len(document))]
    finally:
        document.close()


def _pdfium_page_text(document: pdfium.PdfDocument, index: int) -> str:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            return str(textpage.get_text_bounded())  # full Unicode, unlike get_text_range
        finally:
            textpage.close()
    finally:
        page.close()


def _pypdf_texts(data: bytes) -> list[str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED:
        raise _PdfPasswordRequired
    return [page.extract_text() or "" for page in reader.pages]


# pdfium marks a hyphen it found at a line end with \x02 (or U+FFFE) and joins the two lines; the
# line break is put back so line widths stay true and one rule mends hyphens for both parsers.
_PDFIUM_HYPHEN = re.compile("[\x02\ufffe]\n?")
_PDF_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")
_RUNNING_EDGE = 3  # lines at each end of a page where headers and footers live
_DIGITS = re.compile(r"\d+")
_LIST_ITEM = re.compile(r"^([-•▪◦*–]|\(?[0-9a-zA-Z]{1,3}[.)])\s")
_NUMBERS = re.compile(r"[\d.,%$€£()\-]+")


def _pdf_lines(raw: str) -> list[str]:
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = _PDF_CONTROL.sub("", _PDFIUM_HYPHEN.sub("-\n", text))
    return [" ".join(line.split()) for line in text.split("\n")]


def _squash(line: str) -> str:
    return " ".join(line.lower().split())


def _shape(line: str) -> str:
    """The line with every number replaced: "Page 3 of 80" and "Page 12 of 80" share a shape."""
    return _DIGITS.sub("#", _squash(line))


def _edge_positions(lines: list[str]) -> list[int]:
    filled = [index for index, line in enumerate(lines) if line]
    if len(filled) <= 2 * _RUNNING_EDGE:
        return filled
    return filled[:_RUNNING_EDGE] + filled[-_RUNNING_EDGE:]


@dataclass(frozen=True)
class _RunningLines:
    exact: frozenset[str]  # identical text near the top or bottom of many pages
    counters: frozenset[str]  # shapes whose number follows the page number (page footers)

    def matches(self, line: str) -> bool:
        return _squash(line) in self.exact or _shape(line) in self.counters


def _find_running_lines(pages: list[list[str]]) -> _RunningLines:
    """Header/footer candidates from the edge lines of every page. A line counts when it recurs on at
    least half the pages (and at least 3): word for word, or with a number that moves in step with
    the page number ("Page 12 of 80", "Annual Report 2023 - 12"; roman numerals are not caught).
    Comparing shapes alone would also match table rows like "Item 4 1,250 3.5%" at a page's edge."""
    exact: Counter[str] = Counter()
    steps: Counter[tuple[str, int, int]] = Counter()  # (shape, which number, number - page)
    for page, lines in enumerate(pages, start=1):
        edges = [lines[index] for index in _edge_positions(lines)]
        exact.update({_squash(line) for line in edges})
        steps.update({step for line in edges for step in _page_steps(line, page)})
    needed = max(3, math.ceil(len(pages) / 2))
    return _RunningLines(
        exact=frozenset(key for key, count in exact.items() if count >= needed),
        counters=frozenset(shape for (shape, _, _), count in steps.items() if count >= needed),
    )


def _page_steps(line: str, page: int) -> set[tuple[str, int, int]]:
    """How each number of a short-numbered line relates to the page it is on. Rows of figures
    (more than 4 numbers) are never page furniture."""
    numbers = _DIGITS.findall(line)
    if len(numbers) > 4:
        return set()
    shape = _shape(line)
    return {
        (shape, position, int(digits) - page) for position, digits in enumerate(numbers) if len(digits) <= 5
    }


def _drop_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Remove page headers and footers. Only edge lines are dropped, so a body line stays even when
    it reads like one."""
    if len(pages) < 3:
        return pages
    running = _find_running_lines(pages)
    if not (running.exact or running.counters):
        return pages
    cleaned = []
    for lines in pages:
        drop = {index for index in _edge_positions(lines) if running.matches(lines[index])}
        cleaned.append([line for index, line in enumerate(lines) if index not in drop])
    return cleaned


def _join_pdf_lines(lines: list[str]) -> str:
    """Rebuild paragraphs from PDF lines: wrapped lines of prose are joined (and hyphenated words
    mended); short lines, list items and rows of figures keep their own line."""
    width = _typical_width(lines)
    paragraphs: list[tuple[list[str], bool]] = []  # (lines, came after a blank line)
    after_blank = False
    for line in lines:
        if not line:
            after_blank = True
            continue
        if paragraphs and not after_blank and _continues(paragraphs[-1][0][-1], line, width):
            paragraphs[-1][0].append(line)
        else:
            paragraphs.append(([line], after_blank))
        after_blank = False
    return _render_paragraphs(paragraphs)


def _render_paragraphs(paragraphs: Iterable[tuple[list[str], bool]]) -> str:
    out: list[str] = []
    previous_prose = False
    for lines, after_blank in paragraphs:
        prose = len(lines) > 1
        if out:
            out.append("\n\n" if after_blank or prose or previous_prose else "\n")
        text = lines[0]
        for line in lines[1:]:
            text = _join_wrapped(text, line)
        out.append(text)
        previous_prose = prose
    return "".join(out)


def _typical_width(lines: list[str]) -> int:
    lengths = sorted(len(line) for line in lines if line)
    return lengths[int(len(lengths) * 0.9)] if lengths else 0


def _ends_in_hyphen(text: str) -> bool:
    return len(text) > 1 and text[-1] == "-" and text[-2].isalpha()


def _join_wrapped(text: str, line: str) -> str:
    """ "inter-" + "national" -> "international"; "Anglo-" + "Saxon" keeps its hyphen."""
    if _ends_in_hyphen(text) and line[:1].islower():
        return text[:-1] + line
    if _ends_in_hyphen(text) and line[:1].isupper():
        return text + line
    return f"{text} {line}"


def _continues(previous: str, line: str, width: int) -> bool:
    if _ends_in_hyphen(previous) and line[:1].isalpha():
        return True
    if width < 40 or len(previous) < 0.75 * width or _LIST_ITEM.match(line):
        return False
    return not (_mostly_numbers(previous) or _mostly_numbers(line))


def _mostly_numbers(line: str) -> bool:
    numeric = sum(len(token) for token in line.split() if _NUMBERS.fullmatch(token))
    return numeric > 0.4 * len(line.replace(" ", ""))


_PARSERS: dict[str, Callable[[_Upload], list[Section]]] = {
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "html": _parse_html,
    "markdown": _parse_markdown,
    "rst": _parse_rst,
    "text": _parse_plain_text,
    "json": _parse_json,
    "yaml": _parse_yaml,
    "csv": _parse_csv,
    "code": _parse_code,
}
