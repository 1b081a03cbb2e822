"""The parser for each kind of file, and the one rule for what escapes them: a UserFacingError, or a
MemoryError for the sandbox to report. Runs inside the parse child (rag.extract.sandbox)."""

from __future__ import annotations

from collections.abc import Callable

from rag import filetypes
from rag.errors import UserFacingError
from rag.extract.common import _Upload
from rag.extract.data import _parse_csv, _parse_json, _parse_yaml
from rag.extract.markup import _parse_markdown, _parse_rst
from rag.extract.pdf import _parse_pdf
from rag.extract.text import _parse_code, _parse_plain_text
from rag.extract.webpage import _parse_html
from rag.extract.word import _parse_docx
from rag.types import Section

KIND_LABEL = {
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


def damaged(name: str, kind: str) -> UserFacingError:
    return UserFacingError(
        f"{name} could not be read as {KIND_LABEL[kind]} (it may be damaged). "
        "Please check the file, or save it again and re-upload it."
    )


def parse_sections(upload: _Upload) -> list[Section]:
    """Sections of an upload whose name and size were checked. Raises UserFacingError for a bad file,
    MemoryError when it needs more memory than the process may have."""
    kind = filetypes.kind_of(upload.ext)
    try:
        return _PARSERS[kind](upload)
    except (UserFacingError, MemoryError):
        raise
    except Exception as exc:  # hostile or broken files make parsers raise anything at all
        raise damaged(upload.name, kind) from exc


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
