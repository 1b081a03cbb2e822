"""Tables of PDF pages as text a question can match: each row becomes a line that names its row, each
column header and the value ("Net revenue — Three months ended June 30, 2023: 1,234; …"), under the
table's header line, with the caption (the short lines just above the table) as the table's heading.

pdfplumber (pdfminer underneath) reads each page asked for: ruled tables come from its line-based table
finder, tables aligned by whitespace alone (most financial statements) from the positions of its
words: lines of text cut into cells at wide gaps, columns where the cells of most rows line up. A table
whose header cannot be told (no row of column names above its figures) is left to the page's running
text, where it reads as before. pdfminer is slow (about 0.1 s for a page of prose), so only pages that
the caller found to look tabular are read here, within a time budget.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import signal
import statistics
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pdfplumber

# A gap this wide (in font sizes) between two words on a line separates two cells; words in a cell and
# in justified prose are a space apart (about 0.3 of the font size).
_CELL_GAP = 1.0
_ROW_GAP = 2.6  # lines further apart than this (baseline to baseline, in font sizes) end a table
_CAPTION_GAP = 2.6  # the caption's lines are at most this far above the table (or the line below)
_CAPTION_LINES = 3
_CAPTION_CHARS = 150
_MIN_BODY_ROWS = 2
_FIGURE = re.compile(r"^[(\[]?[-+−–—]?[$€£¥]?\s?[-+−]?\d[\d,.\s]*%?[)\]]?\*?$|^[-—–]$")
_YEAR = re.compile(r"^(19|20)\d\d$")
_CURRENCY = frozenset("$€£¥")
_CLOSERS = frozenset({"%", ")", "%)"})

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PageTable:
    """A table found on a page: where it is (PDF user space: left, bottom, right, top) and its text."""

    bbox: Box
    caption: str
    text: str


def find_tables(data: bytes, page_indexes: Iterable[int], seconds: float) -> dict[int, list[PageTable]]:
    """The tables of the given pages (0-based), read until `seconds` have passed (pdfminer is stopped
    mid-page then: one page of a million drawing operators or of a grid of ruling lines would take it
    minutes); pages not reached in time, that pdfminer cannot read, or that are rotated get none (their
    text is read as before)."""
    found: dict[int, list[PageTable]] = {}
    deadline = time.monotonic() + seconds
    try:
        with time_limit(seconds), pdfplumber.open(io.BytesIO(data)) as pdf:
            pages = pdf.pages
            for index in page_indexes:
                if time.monotonic() > deadline:
                    break
                if not 0 <= index < len(pages):
                    continue
                page = pages[index]
                try:
                    if page.rotation == 0 and (tables := page_tables(page)):
                        found[index] = tables
                finally:
                    page.close()
    except OutOfTime:
        pass  # the pages read so far keep their tables
    except MemoryError:
        pass  # tables are a refinement: the page text was read already, and is kept
    except Exception:  # pdfminer could not read the file or a page: its text is read as before
        pass
    return found


class OutOfTime(BaseException):
    """Raised by `time_limit` into the work it bounds. Not an Exception, so that no `except Exception`
    in pdfminer or pdfplumber takes it for a damaged file and carries on."""


REPEAT_S = 0.05  # how soon an interrupt comes again after one that was swallowed


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with OutOfTime once `seconds` have passed (at once when none are left). A
    timer the process had set (the parse child's last alarm) is put back, less the time spent here, and
    comes first if it is due sooner. The interrupt repeats every REPEAT_S until the block ends: one
    can land where Python ignores exceptions (a weakref callback of the garbage collector). Only the
    main thread can be interrupted: elsewhere the block runs to its end (callers also check their
    deadline between pages)."""
    if seconds <= 0:
        raise OutOfTime
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = [True]

    def interrupt(signum: int, frame: Any) -> None:
        if armed[0]:
            raise OutOfTime

    started = time.monotonic()
    previous = signal.getsignal(signal.SIGALRM)
    pending = signal.getitimer(signal.ITIMER_REAL)[0]  # the process's own alarm: seconds to go, or 0
    try:
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, min(seconds, pending) if pending else seconds, REPEAT_S)
        yield
    finally:
        while armed[0]:  # first: from here on the handler raises nothing, even one due right now
            with contextlib.suppress(OutOfTime):
                armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        if pending:
            signal.setitimer(signal.ITIMER_REAL, max(pending - (time.monotonic() - started), 0.001))


def has_table(words: Sequence[dict[str, Any]]) -> bool:
    """Whether words (pdfplumber's shape, from any source) hold a table this module would rewrite,
    looking at their alignment only: the cheap test before a page is read by pdfplumber."""
    return bool(_aligned_grids(_text_lines(words)))


def page_tables(page: Any) -> list[PageTable]:
    """The tables of one pdfplumber page, top to bottom."""
    height = float(page.height)
    tables: list[PageTable] = []
    ruled_boxes: list[Box] = []
    lines = _text_lines(page.extract_words(x_tolerance=1.5, y_tolerance=2, extra_attrs=["size"]))
    for ruled in page.find_tables({"vertical_strategy": "lines", "horizontal_strategy": "lines"}):
        box = tuple(float(v) for v in ruled.bbox)
        ruled_boxes.append(box)  # type: ignore[arg-type]
        rows = [[_cell(cell) for cell in row] for row in ruled.extract()]
        grid = _Grid.from_ruled(rows, box)  # type: ignore[arg-type]
        if grid is not None:
            tables.append(_page_table(grid, grid.title or _caption(lines, grid.box, ruled_boxes), height))
    free = [line for line in lines if not any(_inside(line.box, box) for box in ruled_boxes)]
    for grid in _aligned_grids(free):
        tables.append(_page_table(grid, _caption(lines, grid.box, ruled_boxes), height))
    return sorted(tables, key=lambda table: -table.bbox[3])


def _page_table(grid: _Grid, caption: str, height: float) -> PageTable:
    x0, top, x1, bottom = grid.box
    return PageTable(
        bbox=(x0 - 1, height - bottom - 1, x1 + 1, height - top + 1), caption=caption, text=grid.text()
    )


def _cell(value: str | None) -> str | None:
    return None if value is None else " ".join(value.split())


def _inside(inner: Box, outer: Box) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def is_figure(text: str) -> bool:
    """A number as tables print them: 1,234 (56) -7.5% $ 12 — and a dash for nothing."""
    return bool(_FIGURE.match(text.strip()))


def _is_value(text: str) -> bool:
    """A figure that is a value, not a column's year ("2023" heads a column; "1,234" fills one)."""
    return is_figure(text) and not _YEAR.match(text.strip())


# -- lines and cells from word positions (pdfplumber's coordinates: top grows downwards) ---------------


@dataclass
class _Segment:
    """Words of a line with no wide gap between them: one cell's text."""

    x0: float
    x1: float
    top: float
    bottom: float
    text: str
    words: int = 1


@dataclass
class _Line:
    segments: list[_Segment]
    size: float

    @property
    def top(self) -> float:
        return min(s.top for s in self.segments)

    @property
    def bottom(self) -> float:
        return max(s.bottom for s in self.segments)

    @property
    def box(self) -> Box:
        return (min(s.x0 for s in self.segments), self.top, max(s.x1 for s in self.segments), self.bottom)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


def _text_lines(words: Sequence[dict[str, Any]]) -> list[_Line]:
    """Words grouped into lines (by baseline), each cut into segments at gaps of a cell's width."""
    upright = [w for w in words if w.get("upright", True) and str(w["text"]).strip()]
    upright.sort(key=lambda w: (float(w["bottom"]), float(w["x0"])))
    groups: list[list[dict[str, Any]]] = []
    for word in upright:
        size = float(word.get("size") or word["bottom"] - word["top"] or 10)
        if groups and abs(float(word["bottom"]) - float(groups[-1][-1]["bottom"])) <= 0.35 * size:
            groups[-1].append(word)
        else:
            groups.append([word])
    lines = []
    for group in groups:
        group.sort(key=lambda w: float(w["x0"]))
        size = statistics.median(float(w.get("size") or w["bottom"] - w["top"] or 10) for w in group)
        segments: list[_Segment] = []
        for word in group:
            x0, x1 = float(word["x0"]), float(word["x1"])
            if segments and x0 - segments[-1].x1 < _CELL_GAP * size:
                last = segments[-1]
                last.x1, last.text, last.words = (
                    max(last.x1, x1),
                    f"{last.text} {word['text']}",
                    last.words + 1,
                )
                last.top, last.bottom = (
                    min(last.top, float(word["top"])),
                    max(last.bottom, float(word["bottom"])),
                )
            else:
                segments.append(
                    _Segment(x0, x1, float(word["top"]), float(word["bottom"]), str(word["text"]))
                )
        lines.append(_Line(_glue_symbols(segments), size))
    return lines


def _glue_symbols(segments: list[_Segment]) -> list[_Segment]:
    """A currency sign set apart from its figure ("$      1,234") joins the figure; a lone "%" or ")"
    joins the figure before it."""
    out: list[_Segment] = []
    for segment in segments:
        if out and (out[-1].text in _CURRENCY or segment.text in _CLOSERS):
            last = out[-1]
            joiner = "" if segment.text in _CLOSERS else " "
            out[-1] = _Segment(
                last.x0,
                segment.x1,
                min(last.top, segment.top),
                max(last.bottom, segment.bottom),
                f"{last.text}{joiner}{segment.text}",
                last.words + segment.words,
            )
        else:
            out.append(segment)
    return out


def _is_prose(line: _Line, text_width: float) -> bool:
    """A line of running text: a long run of words, or two (two text columns side by side)."""
    long = [s for s in line.segments if s.words >= 6 and not _is_value(s.text)]
    if len(long) >= 2 or any(s.words >= 14 for s in long):
        return True
    if len(line.segments) == 1 and long:
        segment = long[0]
        return segment.words >= 8 and segment.x1 - segment.x0 >= 0.6 * text_width
    return False


# -- whitespace-aligned tables ------------------------------------------------------------------------


@dataclass
class _Column:
    x0: float
    x1: float

    def overlap(self, segment: _Segment) -> float:
        return min(self.x1, segment.x1) - max(self.x0, segment.x0)

    @property
    def center(self) -> float:
        return (self.x0 + self.x1) / 2


def _aligned_grids(lines: list[_Line]) -> list[_Grid]:
    if not lines:
        return []
    text_width = max(line.box[2] for line in lines) - min(line.box[0] for line in lines)
    grids = []
    for block in _blocks(lines, text_width):
        grids.extend(_block_grids(block))
    return grids


def _blocks(lines: list[_Line], text_width: float) -> list[list[_Line]]:
    """Runs of lines close together with no line of prose among them."""
    blocks: list[list[_Line]] = []
    current: list[_Line] = []
    for line in lines:
        if _is_prose(line, text_width):
            blocks.append(current)
            current = []
            continue
        if current and line.bottom - current[-1].bottom > _ROW_GAP * max(line.size, current[-1].size):
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    return [block for block in blocks if sum(len(line.segments) >= 2 for line in block) >= _MIN_BODY_ROWS]


def _block_grids(block: list[_Line]) -> list[_Grid]:
    """The table of a block of lines, if its cells line up in columns; the lines of the block that do
    not fit those columns are left out (a block may hold more than one table: each is tried)."""
    columns = _columns(block)
    if columns is None:
        return []
    rows: list[list[str]] = []
    indents: list[float] = []
    used: list[_Line] = []
    grids: list[_Grid] = []
    started = False
    for line in block:
        cells = _assign(line, columns, header=not started)
        if cells is None:  # does not fit the columns: the table so far (if any) ends here
            grids.extend(_grid(rows, indents, used))
            rows, indents, used, started = [], [], [], False
            continue
        if any(_is_value(cell) for cell in cells[1:]):
            started = True
        rows.append(cells)
        indents.append(line.segments[0].x0)
        used.append(line)
    grids.extend(_grid(rows, indents, used))
    return grids


def _columns(block: list[_Line]) -> list[_Column] | None:
    """Columns from the lines with the most common number of cells (two or more): where their first,
    second, … cells lie. None when those cells do not line up in separate columns."""
    counts = [len(line.segments) for line in block if len(line.segments) >= 2]
    for count in sorted(set(counts), key=lambda c: (-counts.count(c), -c)):
        anchors = [line for line in block if len(line.segments) == count]
        if len(anchors) < _MIN_BODY_ROWS:
            continue
        columns = [
            _Column(
                min(line.segments[j].x0 for line in anchors), max(line.segments[j].x1 for line in anchors)
            )
            for j in range(count)
        ]
        if all(left.x1 < right.x0 for left, right in itertools.pairwise(columns)):
            return columns
    return None


def _assign(line: _Line, columns: list[_Column], *, header: bool) -> list[str] | None:
    """The line's cells by column; None when a segment fits no column. A heading over several columns
    (above the first row of figures) is given to each column it spans."""
    cells = [""] * len(columns)
    first = columns[0]
    if len(line.segments) == 1 and line.segments[0].x0 <= first.x1 and line.segments[0].x0 >= first.x0 - 2:
        cells[0] = line.segments[0].text  # a row label alone (however long): a group or a wrapped label
        return cells
    heads = [s for s in line.segments if s.x0 > first.x1]
    if header and any(_covers(s, c) for s in line.segments if s not in heads for c in columns[1:]):
        return None  # a title across the label column and the figures: above the table
    if header and heads and len(heads) < len(columns) - 1:
        return _spanning_heads(line, columns, heads)
    for segment in line.segments:
        spanned = [j for j, column in enumerate(columns) if _covers(segment, column)]
        if not spanned:
            nearest = min(range(len(columns)), key=lambda j: abs(columns[j].center - _middle(segment)))
            if _gap(segment, columns[nearest]) > 2 * line.size:
                return None
            spanned = [nearest]
        if len(spanned) > 1 and not header:
            return None  # text across columns below the header: not this table's row
        for j in spanned:
            cells[j] = f"{cells[j]} {segment.text}".strip()
    return cells


def _spanning_heads(line: _Line, columns: list[_Column], heads: list[_Segment]) -> list[str] | None:
    """A heading row with fewer names than columns: each name heads the columns nearest to it ("Three
    months ended June 30," over "2023" and "2022"), and is centred over them; None when one is not."""
    cells = [""] * len(columns)
    spans: dict[int, list[int]] = {}
    for j, column in enumerate(columns[1:], start=1):
        nearest = min(range(len(heads)), key=lambda k: abs(_middle(heads[k]) - column.center))
        spans.setdefault(nearest, []).append(j)
    for k, spanned in spans.items():
        left, right = columns[spanned[0]], columns[spanned[-1]]
        if abs(_middle(heads[k]) - (left.center + right.center) / 2) > max(
            0.25 * (right.center - left.center), line.size
        ):
            return None  # not over its columns: a title centred on the page
        for j in spanned:
            cells[j] = heads[k].text
    for segment in line.segments:
        if segment not in heads:
            cells[0] = f"{cells[0]} {segment.text}".strip()
    return cells


def _covers(segment: _Segment, column: _Column) -> bool:
    overlap = column.overlap(segment)
    width = min(column.x1 - column.x0, segment.x1 - segment.x0) or 1.0
    return overlap > 0.3 * width or column.x0 <= _middle(segment) <= column.x1


def _middle(segment: _Segment) -> float:
    return (segment.x0 + segment.x1) / 2


def _gap(segment: _Segment, column: _Column) -> float:
    return max(column.x0 - segment.x1, segment.x0 - column.x1, 0.0)


def _grid(rows: list[list[str]], indents: list[float], lines: list[_Line]) -> list[_Grid]:
    # label-only lines above the first row with cells are titles, not rows (the caption finds them)
    while rows and not any(rows[0][1:]):
        rows, indents, lines = rows[1:], indents[1:], lines[1:]
    while rows and not any(rows[-1][1:]):
        rows, indents, lines = rows[:-1], indents[:-1], lines[:-1]
    if not rows:
        return []
    box = (
        min(line.box[0] for line in lines),
        min(line.top for line in lines),
        max(line.box[2] for line in lines),
        max(line.bottom for line in lines),
    )
    grid = _Grid.build(rows, box, indents)
    return [grid] if grid is not None else []


# -- a table's rows as text ---------------------------------------------------------------------------


@dataclass
class _Grid:
    """A table: its header's column names, its rows (label and cells) and where it is."""

    box: Box  # pdfplumber's coordinates: x0, top, x1, bottom
    names: list[str]
    label_name: str
    rows: list[list[str]]
    indents: list[float] = field(default_factory=list)
    title: str = ""  # a ruled table's first row, when it is one cell across the table

    @classmethod
    def from_ruled(cls, rows: list[list[str | None]], box: Box) -> _Grid | None:
        """A ruled table's cells (None where a merged cell spans): a merged header cell names every
        column it spans."""
        if len(rows) < 2 or max((len(row) for row in rows), default=0) < 2:
            return None
        width = max(len(row) for row in rows)
        filled: list[list[str]] = []
        for row in rows:
            cells: list[str] = []
            for cell in [*row, *[None] * (width - len(row))]:
                cells.append(cell if cell is not None else (cells[-1] if cells else ""))
            filled.append(cells)
        title = ""
        if len(set(filled[0])) == 1:  # one cell across the table: its title, not its columns' names
            title, filled, rows = filled[0][0], filled[1:], rows[1:]
        grid = cls.build(filled, box, [], spanning=rows) if filled else None
        if grid is not None:
            grid.title = title
        return grid

    @classmethod
    def build(
        cls,
        rows: list[list[str]],
        box: Box,
        indents: list[float],
        spanning: list[list[str | None]] | None = None,
    ) -> _Grid | None:
        """The header is the rows above the first row with a label and a value whose label cell is
        empty; failing that, a first row that holds no value. No header: not a table to rewrite."""
        first_body = next(
            (i for i, row in enumerate(rows) if row[0] and any(_is_value(cell) for cell in row[1:])), None
        )
        heads = 0
        while heads < len(rows) and not rows[heads][0] and any(rows[heads][1:]):
            heads += 1
        if heads == 0 and rows[0][0] and all(rows[0][1:]) and not any(_is_value(c) for c in rows[0]):
            heads = 1
        if heads == 0 or (first_body is not None and first_body < heads):
            return None
        if spanning is not None:  # a merged cell fills the row to its right only in the header
            rows = [
                row
                if i < heads
                else [cell or "" for cell in spanning[i]] + [""] * (len(row) - len(spanning[i]))
                for i, row in enumerate(rows)
            ]
        body = rows[heads:]
        if sum(any(row[1:]) for row in body) < _MIN_BODY_ROWS:
            return None
        if any(_is_key(cell) for row in rows[:heads] for cell in row) or 4 * sum(
            any(_is_key(cell) for cell in row[1:]) for row in body
        ) >= len(body):
            return None  # a form of "Name: value" boxes: its text reads well as it is
        if not any(_is_value(cell) for row in body for cell in row[1:]) and _wordy(body):
            return None  # long text in every cell: running text laid out in columns, not a table
        names = [_column_name([row[j] for row in rows[:heads]]) for j in range(len(rows[0]))]
        if not any(names[1:]):
            return None
        return cls(box, names[1:], names[0], body, indents[heads:] if indents else [])

    def text(self) -> str:
        header = " | ".join(name for name in [self.label_name, *self.names] if name)
        lines = [header]
        group, group_indent = "", None
        pending = ""  # the first part of a label wrapped onto the next line
        for index, row in enumerate(self.rows):
            label, cells = " ".join(filter(None, [pending, row[0]])), row[1:]
            indent = self.indents[index] if index < len(self.indents) else None
            if not any(cells):
                following = self.rows[index + 1][0] if index + 1 < len(self.rows) else ""
                if following[:1].islower() and not label.endswith(":"):
                    pending = label
                    continue
                pending = ""
                lines.append(label)
                group, group_indent = label.rstrip(":").strip(), indent
                continue
            pending = ""
            if group and (indent is None or group_indent is None or indent <= group_indent + 1):
                group = ""  # back at the group's margin: the group has ended
            if group:
                label = f"{group}: {label}" if label else group
            values = "; ".join(
                f"{name}: {cell}" if name else cell
                for name, cell in zip(self.names, cells, strict=False)
                if cell
            )
            lines.append(f"{label} — {values}" if label else values)
        return "\n".join(lines)


def _is_key(cell: str) -> bool:
    return cell.endswith(":")


def _column_name(cells: list[str]) -> str:
    parts: list[str] = []
    for cell in cells:
        if cell and (not parts or parts[-1] != cell):
            parts.append(cell)
    return " ".join(parts)


def _wordy(rows: list[list[str]]) -> bool:
    cells = [cell for row in rows for cell in row[1:] if cell]
    return bool(cells) and statistics.mean(len(cell.split()) for cell in cells) > 6


def _caption(lines: list[_Line], box: Box, ruled: list[Box]) -> str:
    """The short lines just above the table (its title, a units line), nearest last; none from inside
    a ruled table."""
    x0, top, x1, _ = box
    above = [
        line
        for line in lines
        if line.bottom <= top + 0.5
        and line.box[2] > x0
        and line.box[0] < x1
        and not any(_inside(line.box, other) for other in ruled if other != box)
    ]
    above.sort(key=lambda line: line.bottom)
    caption: list[str] = []
    edge = top
    for line in reversed(above):
        text = line.text
        if edge - line.bottom > _CAPTION_GAP * line.size or len(text) > _CAPTION_CHARS:
            break
        if text.endswith(".") or len(line.segments) > 1:
            break  # the end of a sentence of the text before the table, or a row of another table
        caption.append(text)
        edge = line.top
        if len(caption) == _CAPTION_LINES:
            break
    return " ".join(reversed(caption))
