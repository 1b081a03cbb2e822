"""What every format parser shares: the upload, decoding text into lines, line-range Sections, and the
messages for files that are not what their name says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag import filetypes
from rag.errors import UserFacingError
from rag.types import Section

_CHECK_FILE = "Please check you picked the right file."


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


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


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
