"""What kind of file a name and some bytes are: extensions, magic numbers, text decoding, zip limits.

Everything here looks at metadata or at the raw bytes only; parsing lives in `rag.extract`. The
descriptions ("a PNG image") end up in messages shown to chat users, so they are plain words.
"""

from __future__ import annotations

import codecs
import io
import itertools
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

# Extension -> the `kind` recorded on ExtractedDocument.
KIND_BY_EXTENSION: dict[str, str] = {
    "txt": "text",
    "md": "markdown",
    "rst": "rst",
    "pdf": "pdf",
    "docx": "docx",
    "html": "html",
    "htm": "html",
    "json": "json",
    "yaml": "yaml",
    "yml": "yaml",
    "csv": "csv",
    "py": "code",
    "js": "code",
    "ts": "code",
    "css": "code",
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(KIND_BY_EXTENSION)

# Ordered: the first match wins. Only signatures that cannot start a real text file belong here
# (see `describe_binary` for the weak ones).
_STRONG_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF"),
    (b"\x7fELF", "a Linux program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Word, Excel or PowerPoint file"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
)
# "MZ" is two printable letters, so it only counts once the bytes have already failed as text.
_WEAK_MAGIC: tuple[tuple[bytes, str], ...] = ((b"MZ", "a Windows program"),)

# Real PDFs sometimes carry a little junk (a mail header, a BOM) before the signature; readers allow
# the signature anywhere in the first 1024 bytes, and so do we.
PDF_SIGNATURE_WINDOW = 1024

_ZIP_LABELS: tuple[tuple[str, str], ...] = (
    ("word/", "a Word document"),
    ("xl/", "an Excel workbook"),
    ("ppt/", "a PowerPoint presentation"),
)

# Control characters that do not occur in text. Tab, newlines, form feed and ESC (ANSI colours in
# log files) are allowed.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_C1_CONTROLS = re.compile(r"[\x80-\x9f]")
_MAX_CONTROL_RATIO = 0.05


def kind_of(extension: str) -> str:
    return KIND_BY_EXTENSION[extension]


def extension_of(name: str) -> str:
    """The lower-case extension without the dot, or "" when the name has none."""
    base = name.strip().replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    return ext.lower() if dot and stem else ""


def human_size(size: int, *, round_up: bool = False) -> str:
    """Sizes as people read them: "14.2 MB", "10 MB", "512 KB", "80 bytes".

    Rounding up keeps an over-limit size from printing as equal to the limit ("10.0 MB; the limit is
    10 MB").
    """
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor:
            tenths = size * 10 / factor
            tenths = float(-(-tenths // 1)) if round_up else round(tenths)
            text = f"{tenths / 10:.1f}"
            return f"{text.removesuffix('.0')} {unit}"
    return f"{size} byte" if size == 1 else f"{size} bytes"


def describe_binary(data: bytes) -> str | None:
    """A plain description of a well-known binary format, or None."""
    head = data[:16]
    for magic, label in _STRONG_MAGIC + _WEAK_MAGIC:
        if head.startswith(magic):
            return describe_zip(data) if label == "a ZIP archive" else label
    return None


def strong_magic(data: bytes) -> str | None:
    """Like `describe_binary`, for signatures that rule out text even when the bytes decode."""
    head = data[:16]
    for magic, label in _STRONG_MAGIC:
        if head.startswith(magic):
            return describe_zip(data) if label == "a ZIP archive" else label
    return None


def describe_zip(data: bytes) -> str:
    """Office files are zips; name the application when the member names give it away."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a ZIP archive"
    for prefix, label in _ZIP_LABELS:
        if any(member.startswith(prefix) for member in names):
            return label
    return "a ZIP archive"


def find_pdf_signature(data: bytes) -> int:
    """Offset of `%PDF-` within the first 1024 bytes, or -1."""
    return data.find(b"%PDF-", 0, PDF_SIGNATURE_WINDOW + len(b"%PDF-"))


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # "utf-8", "utf-16", "cp1252" or "latin-1"


def decode_text(data: bytes) -> DecodedText | None:
    """Decode bytes that are text, or return None for binary data.

    UTF-8 (with or without BOM) and UTF-16 with BOM are trusted. Anything else is tried as
    cp1252 / latin-1 (old Windows exports) only when it has no NUL bytes and reads as mostly
    printable, so a renamed image is not turned into garbage text.
    """
    if data.startswith(codecs.BOM_UTF8):
        return _checked(data[len(codecs.BOM_UTF8) :], "utf-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _checked(data, "utf-16")
    if b"\x00" in data:
        return None
    decoded = _checked(data, "utf-8")
    if decoded is not None:
        return decoded
    for encoding in ("cp1252", "latin-1"):
        decoded = _checked(data, encoding)
        if decoded is not None and not _too_many(_C1_CONTROLS, decoded.text):
            return decoded
    return None


def _checked(data: bytes, encoding: str) -> DecodedText | None:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    if "\x00" in text or _too_many(_CONTROL_CHARS, text):
        return None
    return DecodedText(text=text, encoding=encoding)


def _too_many(pattern: re.Pattern[str], text: str) -> bool:
    """More than 5% matches; stops counting at the limit, so clean text costs one pass."""
    limit = max(1, int(len(text) * _MAX_CONTROL_RATIO))
    return next(itertools.islice(pattern.finditer(text), limit, None), None) is not None


@dataclass(frozen=True)
class ZipLimits:
    """How far a zip may expand before we refuse to open it."""

    max_total: int
    max_members: int = 10_000
    max_ratio: float = 100.0
    ratio_applies_above: int = 10 * 1024 * 1024  # small members compress well legitimately

    @classmethod
    def for_upload_limit(cls, max_bytes: int) -> ZipLimits:
        return cls(max_total=min(20 * max_bytes, 200 * 1024 * 1024))


def zip_expansion_problem(archive: zipfile.ZipFile, limits: ZipLimits) -> str | None:
    """Why this archive should not be unpacked (a zip bomb), judged from its directory only."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        return f"has more than {limits.max_members:,} parts"
    total = sum(member.file_size for member in members)
    if total > limits.max_total:
        return f"expands to more than {human_size(limits.max_total)}"
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > limits.ratio_applies_above and ratio > limits.max_ratio:
            return f"has a part that expands {int(ratio):,} times (to {human_size(member.file_size)})"
    return None


_INFLATE_INPUT = 64 * 1024  # compressed bytes fed to the inflater at a time
_INFLATE_OUTPUT = 1024 * 1024  # most bytes it may produce from them in one call


def zip_inflation_problem(data: bytes, archive: zipfile.ZipFile, limits: ZipLimits) -> str | None:
    """Why this archive should not be unpacked, judged by inflating every member for real, a MB at a
    time and throwing the bytes away, until a limit is passed. The declared sizes are the sender's to
    choose, and zipfile's read() inflates a whole member in one go before it compares the result
    with them: a part declaring 1 KB may take gigabytes. Raises zipfile.BadZipFile, zlib.error or
    NotImplementedError for a damaged archive."""
    total = 0
    for member in archive.infolist():
        compressed = _member_bytes(data, member)
        size = 0
        for produced in _inflated_sizes(compressed, member.compress_type):
            size += produced
            total += produced
            if total > limits.max_total:
                return f"expands to more than {human_size(limits.max_total)}"
            if size > limits.ratio_applies_above and size > limits.max_ratio * max(len(compressed), 1):
                return f"has a part that expands more than {int(limits.max_ratio):,} times"
    return None


def _member_bytes(data: bytes, member: zipfile.ZipInfo) -> memoryview:
    """The stored bytes of a member, found as zipfile finds them: its local header, then the size
    the central directory gives."""
    header = data[member.header_offset : member.header_offset + 30]
    if len(header) < 30 or not header.startswith(b"PK\x03\x04"):
        raise zipfile.BadZipFile(f"no local header for {member.filename!r}")
    start = member.header_offset + 30 + int.from_bytes(header[26:28], "little")
    start += int.from_bytes(header[28:30], "little")
    return memoryview(data)[start : start + member.compress_size]


def _inflated_sizes(compressed: memoryview, method: int) -> Iterator[int]:
    if method == zipfile.ZIP_STORED:
        yield len(compressed)
        return
    if method != zipfile.ZIP_DEFLATED:  # Office files use nothing else
        raise NotImplementedError(f"compression method {method}")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    for offset in range(0, len(compressed), _INFLATE_INPUT):
        pending: bytes | memoryview = compressed[offset : offset + _INFLATE_INPUT]
        while pending and not inflater.eof:
            yield len(inflater.decompress(pending, _INFLATE_OUTPUT))
            pending = inflater.unconsumed_tail
        if inflater.eof:
            return
