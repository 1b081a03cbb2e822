"""Plain text and source code: blank-line separated blocks packed into Sections; Python split per
top-level def and class.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator

from rag.extract.common import _line_section, _text_lines, _Upload
from rag.types import Section

_TXT_SECTION_CHARS = 2000
_CODE_SECTION_LINES = 60
_AST_MAX_CHARS = 1_000_000


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
