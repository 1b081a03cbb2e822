"""PDF: text per page (pypdfium2, pypdf when pdfium cannot open the file), page headers and footers
removed, wrapped lines joined into paragraphs and line-end hyphens mended. Tables on pages that look
tabular are read with their structure (rag.extract.pdf_tables) and replace their region of the page's
text: a Section of their own, on the same page, under their caption.
"""

from __future__ import annotations

import io
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw

from rag import filetypes
from rag.errors import UserFacingError
from rag.extract.common import _not_a, _Upload
from rag.extract.pdf_tables import OutOfTime, PageTable, find_tables, has_table, is_figure, time_limit
from rag.types import Section

# Tables are looked for on pages that look tabular (rows ending in figures, or ruling lines), for at
# most this long per file (pdfminer reads ~10 pages a second); pages past it keep their plain text.
TABLE_SECONDS = 6.0
_TABLE_PAGE_CHARS = 20_000  # a page with more text than this is not read a second time for tables
_FIGURE_ROWS = 3  # lines ending in two or more figures that make a page look tabular
_RULING_SEGMENTS = 16  # path segments (lines, rectangles) that make a page look tabular
_OBJECTS_LOOKED_AT = 2_000


class _PdfPasswordRequired(Exception):
    pass


Item = str | PageTable  # a line of a page's text, or a table in its place


@dataclass(frozen=True)
class _PageText:
    text: str
    tabular: bool = False  # worth looking for tables on


def _parse_pdf(upload: _Upload) -> list[Section]:
    start = filetypes.find_pdf_signature(upload.data)
    if start < 0:
        raise _not_a(upload.name, "a PDF", upload.data)
    deadline = time.monotonic() + TABLE_SECONDS  # for all the work on tables: finding and reading
    texts = _pdf_page_texts(upload, deadline)
    pages: list[list[Item]] = [list(_pdf_lines(page.text)) for page in texts]
    tabular = [index for index, page in enumerate(texts) if page.tabular]
    if tabular:
        tables = find_tables(upload.data[start:], tabular, deadline - time.monotonic())
        if tables:
            for index, items in _pages_with_tables(upload.data, tables).items():
                pages[index] = items
    pages = _drop_running_lines(pages)
    return [
        section for number, items in enumerate(pages, start=1) for section in _page_sections(items, number)
    ]


def _page_sections(items: list[Item], page: int) -> list[Section]:
    """A page's Section, or, around its tables, one per run of text and one per table."""
    if all(isinstance(item, str) for item in items):
        return [Section(text=_join_pdf_lines(items), page=page)]  # type: ignore[arg-type]
    sections: list[Section] = []
    run: list[str] = []
    for item in [*items, None]:
        if isinstance(item, str):
            run.append(item)
            continue
        if text := _join_pdf_lines(run):
            sections.append(Section(text=text, page=page))
        run = []
        if item is not None:
            sections.append(Section(text=item.text, page=page, heading=item.caption))
    return sections


def _pdf_page_texts(upload: _Upload, deadline: float) -> list[_PageText]:
    """Text per page: pdfium first (fast, tolerant), pypdf when pdfium cannot open the file. Pages are
    told apart as tabular or not until the deadline; after it, none is."""
    try:
        try:
            return _pdfium_texts(upload.data, deadline)
        except pdfium.PdfiumError as exc:
            if exc.err_code == pdfium_raw.FPDF_ERR_PASSWORD:
                raise _PdfPasswordRequired from exc
        except MemoryError:
            raise
        except Exception:  # any pdfium failure: give pypdf a chance
            pass
        pages = _pypdf_texts(upload.data)
        if not pages:
            raise ValueError("no pages")
        return [_PageText(text) for text in pages]
    except MemoryError:
        raise  # the sandbox says why (rag.extract.sandbox)
    except _PdfPasswordRequired:
        raise UserFacingError(
            f"{upload.name} is password-protected; please upload an unprotected copy."
        ) from None
    except Exception as exc:
        raise UserFacingError(
            f"{upload.name} could not be read as a PDF (it may be damaged). "
            "Please open it, save or print it to a new PDF, and upload that."
        ) from exc


def _pdfium_texts(data: bytes, deadline: float) -> list[_PageText]:
    document = pdfium.PdfDocument(data)  # an empty user password is tried by pdfium itself
    try:
        return [_pdfium_page_text(document, index, deadline) for index in range(len(document))]
    finally:
        document.close()


def _pdfium_page_text(document: pdfium.PdfDocument, index: int, deadline: float) -> _PageText:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            text = str(textpage.get_text_bounded())  # full Unicode, unlike get_text_range
            chars = textpage.count_chars()
            tabular = (
                chars <= _TABLE_PAGE_CHARS
                and time.monotonic() < deadline
                and (_figure_rows(text) or _ruled(page))
                and _has_table(textpage, text, deadline)
            )
        finally:
            textpage.close()
        return _PageText(text, tabular)
    finally:
        page.close()


def _has_table(textpage: pdfium.PdfTextPage, text: str, deadline: float) -> bool:
    """Whether the page's words line up as a table, if that is told before the deadline."""
    try:
        with time_limit(deadline - time.monotonic()):
            return has_table(_pdfium_words(textpage, text))
    except OutOfTime:
        return False


def _pdfium_words(textpage: pdfium.PdfTextPage, text: str) -> list[dict[str, Any]]:
    """The page's words with their boxes (font-wide, y growing downwards) and font size, from pdfium:
    the same shape as pdfplumber's words, in a few milliseconds instead of a tenth of a second.
    `text` is the page's text, one character per pdfium character (checked)."""
    raw, count = textpage.raw, textpage.count_chars()
    if len(text) != count:
        text = "".join(chr(pdfium_raw.FPDFText_GetUnicode(raw, index)) for index in range(count))
    rect = pdfium_raw.FS_RECTF()
    words: list[dict[str, Any]] = []
    word: dict[str, Any] | None = None
    for index, char in enumerate(text):
        if char.isspace() or not pdfium_raw.FPDFText_GetLooseCharBox(raw, index, rect):
            word = None  # pdfium's own spaces and line breaks are spaces too
            continue
        left, right, bottom = rect.left, rect.right, -rect.bottom
        if (
            word is not None
            and abs(bottom - word["bottom"]) < 1
            and -0.5 * word["size"] <= left - word["x1"] <= 1.5
        ):
            word["text"] += char
            word["x1"] = max(word["x1"], right)
            continue
        size = pdfium_raw.FPDFText_GetFontSize(raw, index)
        word = {"text": char, "x0": left, "x1": right, "top": -rect.top, "bottom": bottom, "size": size}
        words.append(word)
    return words


def _figure_rows(text: str) -> bool:
    """Whether the page has a few lines that end in two or more figures, as a table's rows do."""
    rows = 0
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) >= 3 and is_figure(tokens[-1]) and is_figure(tokens[-2]):
            rows += 1
            if rows >= _FIGURE_ROWS:
                return True
    return False


def _ruled(page: pdfium.PdfPage) -> bool:
    """Whether the page draws enough lines and rectangles to rule a table (its first objects only)."""
    segments = 0
    for index in range(min(pdfium_raw.FPDFPage_CountObjects(page), _OBJECTS_LOOKED_AT)):
        thing = pdfium_raw.FPDFPage_GetObject(page, index)
        if thing and pdfium_raw.FPDFPageObj_GetType(thing) == pdfium_raw.FPDF_PAGEOBJ_PATH:
            segments += max(pdfium_raw.FPDFPath_CountSegments(thing), 0)
            if segments >= _RULING_SEGMENTS:
                return True
    return False


def _pages_with_tables(data: bytes, tables: dict[int, list[PageTable]]) -> dict[int, list[Item]]:
    """The lines of each page that has tables, each table in the place of its characters."""
    document = pdfium.PdfDocument(data)
    try:
        return {index: _page_items(document, index, found) for index, found in tables.items()}
    finally:
        document.close()


def _page_items(document: pdfium.PdfDocument, index: int, tables: list[PageTable]) -> list[Item]:
    """The page's text in pdfium's order with every character inside a table left out and the table
    put where its first character was. Characters pdfium adds (spaces, line breaks) go with the one
    before them. A table none of whose characters pdfium placed inside it goes at the page's end."""
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            pieces: list[str | PageTable] = []
            text: list[str] = []
            placed: set[int] = set()
            inside: int | None = None
            for char in range(textpage.count_chars()):
                if not pdfium_raw.FPDFText_IsGenerated(textpage, char):
                    inside = _table_at(tables, textpage.get_charbox(char))
                if inside is None:
                    text.append(chr(pdfium_raw.FPDFText_GetUnicode(textpage, char)))
                elif inside not in placed:
                    pieces.extend(["".join(text), tables[inside]])
                    text = []
                    placed.add(inside)
            pieces.append("".join(text))
            pieces.extend(table for number, table in enumerate(tables) if number not in placed)
        finally:
            textpage.close()
    finally:
        page.close()
    items: list[Item] = []
    for piece in pieces:
        items.extend(_pdf_lines(piece) if isinstance(piece, str) else [piece])
    return items


def _table_at(tables: list[PageTable], box: tuple[float, float, float, float]) -> int | None:
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for number, table in enumerate(tables):
        left, bottom, right, top = table.bbox
        if left <= x <= right and bottom <= y <= top:
            return number
    return None


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


def _edge_positions(lines: Sequence[Item]) -> list[int]:
    filled = [index for index, line in enumerate(lines) if isinstance(line, str) and line]
    if len(filled) <= 2 * _RUNNING_EDGE:
        return filled
    return filled[:_RUNNING_EDGE] + filled[-_RUNNING_EDGE:]


@dataclass(frozen=True)
class _RunningLines:
    exact: frozenset[str]  # identical text near the top or bottom of many pages
    counters: frozenset[str]  # shapes whose number follows the page number (page footers)

    def matches(self, line: str) -> bool:
        return _squash(line) in self.exact or _shape(line) in self.counters


def _find_running_lines(pages: list[list[Item]]) -> _RunningLines:
    """Header/footer candidates from the edge lines of every page. A line counts when it recurs on at
    least half the pages (and at least 3): word for word, or with a number that moves in step with
    the page number ("Page 12 of 80", "Annual Report 2023 - 12"; roman numerals are not caught).
    Comparing shapes alone would also match table rows like "Item 4 1,250 3.5%" at a page's edge."""
    exact: Counter[str] = Counter()
    steps: Counter[tuple[str, int, int]] = Counter()  # (shape, which number, number - page)
    for page, lines in enumerate(pages, start=1):
        edges = [str(lines[index]) for index in _edge_positions(lines)]
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


def _drop_running_lines(pages: list[list[Item]]) -> list[list[Item]]:
    """Remove page headers and footers. Only edge lines are dropped, so a body line stays even when
    it reads like one."""
    if len(pages) < 3:
        return pages
    running = _find_running_lines(pages)
    if not (running.exact or running.counters):
        return pages
    cleaned = []
    for lines in pages:
        drop = {index for index in _edge_positions(lines) if running.matches(str(lines[index]))}
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
