"""PDF: text per page (pypdfium2, pypdf when pdfium cannot open the file), page headers and footers
removed, wrapped lines joined into paragraphs and line-end hyphens mended.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw

from rag import filetypes
from rag.errors import UserFacingError
from rag.extract.common import _not_a, _Upload
from rag.types import Section


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
        except MemoryError:
            raise
        except Exception:  # any pdfium failure: give pypdf a chance
            pass
        pages = _pypdf_texts(upload.data)
        if not pages:
            raise ValueError("no pages")
        return pages
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
