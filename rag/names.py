"""Document names: one canonical form for every way a name arrives, and a short form to echo.

A name arrives from Slack, Teams, a terminal path, a folder walk or a typed `forget NAME`. The same
file must be one document whichever way it came (`café.md` typed on a Mac is decomposed, elsewhere
composed), and a name must be safe to show and to store: no path separators that make it look like
a path, no control or bidirectional-override characters that hide what it says, and a bounded length.
"""

from __future__ import annotations

import re
import unicodedata

from rag.errors import UserFacingError

MAX_NAME_CHARS = 200
MAX_EXTENSION_CHARS = 16  # longer than this after the last dot is part of the name, not a type
SHOWN_CHARS = 80  # how much of a name a reply echoes

_SEPARATORS = re.compile(r"[/\\]+")
_SPACES = re.compile(r"\s+")
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, formats (bidi), unassigned


def normalize_name(name: str) -> str:
    """The canonical form of a document name. Idempotent; raises when nothing usable is left.

    Unicode NFC; path separators become `_` (a folder's `it/vpn.md` is `it_vpn.md`); a backtick
    becomes `'` (chat replies show names as code, which cannot hold one); control and format
    characters (bidi overrides, zero-width) are dropped and any run of white space is one space; at
    most MAX_NAME_CHARS characters, cut from the stem so the extension (the file's type) stays.
    """
    name = unicodedata.normalize("NFC", name)
    name = _SEPARATORS.sub("_", name).replace("`", "'")
    name = "".join(" " if ch.isspace() else ch for ch in name if not _invisible(ch))
    name = _SPACES.sub(" ", name).strip()
    name = _shorten_keeping_extension(name, MAX_NAME_CHARS)
    if not name.strip("._ "):
        raise UserFacingError("That file has no usable name: give it one with letters or digits.")
    return name


def name_key(name: str) -> str:
    """What two names must share to be the same document; tolerant of names stored before
    normalisation existed, and of names no normalisation can use (they match nothing new)."""
    try:
        return normalize_name(name)
    except UserFacingError:
        return name


# Letters of other scripts drawn like Latin ones (a short list of the common ones, after NFKC).
_CONFUSABLE = str.maketrans(
    {
        **dict(zip("аеорсухіјѕԁһӏԛԝк", "aeopcyxijsdhlqwk", strict=True)),  # Cyrillic
        **dict(zip("αονικρτυχ", "aovikptux", strict=True)),  # Greek
    }
)
# Letters that show as nothing (Hangul fillers) besides the marks and formats dropped by category.
_BLANK_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0"}


def look_alike_key(name: str) -> str:
    """What two names share when a reader could not tell them apart: NFKC (fullwidth letters),
    case folded, combining marks, variation selectors and invisible letters dropped, common Cyrillic
    and Greek look-alikes read as Latin. `Policy.md`, `p\u043elicy.md` and `polic\u034fy.md` all
    look like `policy.md`."""
    folded = unicodedata.normalize("NFKC", normalize_name(name)).casefold()
    decomposed = unicodedata.normalize("NFD", folded)
    kept = "".join(
        ch
        for ch in decomposed
        if unicodedata.category(ch) not in {"Mn", "Me", "Cf"} and ch not in _BLANK_LETTERS
    )
    return kept.translate(_CONFUSABLE)


def shown(name: str, limit: int = SHOWN_CHARS) -> str:
    """A name as a reply echoes it: whole when short, else its start and its end around `…`."""
    if len(name) <= limit:
        return name
    tail = max(limit // 4, len(_extension(name)))
    tail = min(tail, limit // 2)
    return f"{name[: limit - tail - 1].rstrip()}…{name[-tail:]}"


def _invisible(ch: str) -> bool:
    if ch in "\t\n\r\v\f":
        return False  # white space: becomes a space
    return unicodedata.category(ch) in _INVISIBLE


def _extension(name: str) -> str:
    dot = name.rfind(".")
    if dot <= 0:
        return ""
    ext = name[dot:]
    return ext if len(ext) <= MAX_EXTENSION_CHARS and " " not in ext else ""


def _shorten_keeping_extension(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    ext = _extension(name)
    return name[: limit - len(ext)].rstrip(" .") + ext
