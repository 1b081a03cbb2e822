"""Turn an uploaded file's bytes into Sections: text with its page, heading path or line range.

Two entry points. `check_metadata` runs on the name and size alone, before anything is downloaded.
`extract` repeats that check, confirms from the bytes that the content is what the name says, and
parses it. Every bad input ends as a UserFacingError whose message names the file, says what is wrong
and what to do; no parser exception escapes (uploads are untrusted and parsers raise anything).

No settings, no logging of contents. Parsing runs in a child process with a memory and a time budget
(`sandbox`), so a decompression bomb or a parse that never ends costs that child and ends with a
reason; `extract` blocks until then, so callers run it off the event loop.

One module per family of formats: `text` (plain text, code), `markup` (Markdown, reStructuredText),
`webpage` (HTML), `word` (.docx), `data` (JSON, YAML, CSV), `pdf`; `common` holds what they share,
`parse` picks the parser for a kind.
"""

from __future__ import annotations

from rag import filetypes
from rag.errors import UserFacingError
from rag.extract.common import _no_text, _readable, _Upload
from rag.extract.sandbox import parse_isolated
from rag.types import ExtractedDocument

SUPPORTED_EXTENSIONS: frozenset[str] = filetypes.SUPPORTED_EXTENSIONS


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
    sections = parse_isolated(upload)  # in a child process, within a memory and a time budget
    kept = tuple(section for section in sections if section.text.strip())
    if not kept:
        raise _no_text(name, kind)
    return ExtractedDocument(name=name, kind=kind, sections=kept)
