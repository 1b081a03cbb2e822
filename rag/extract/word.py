"""Word documents (.docx): paragraphs and tables under the heading path, after a zip-bomb check by
what each part really inflates to."""

from __future__ import annotations

import io
import re
import zipfile
import zlib

from docx import Document as load_docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from rag import filetypes
from rag.errors import UserFacingError
from rag.extract.common import _not_a, _Upload
from rag.extract.outline import _Outline
from rag.types import Section

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
    """A .docx is a zip; judge its directory, then what each part really inflates to, before
    python-docx unpacks anything."""
    if not upload.data.startswith(b"PK\x03\x04"):
        raise _not_a(upload.name, "a Word (.docx) document", upload.data)
    limits = filetypes.ZipLimits.for_upload_limit(upload.max_bytes)
    try:
        with zipfile.ZipFile(io.BytesIO(upload.data)) as archive:
            problem = filetypes.zip_expansion_problem(archive, limits)
            names = set(archive.namelist())
            if problem is None and "word/document.xml" in names:
                problem = filetypes.zip_inflation_problem(upload.data, archive, limits)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        ValueError,
        zlib.error,
        NotImplementedError,
    ) as exc:
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
