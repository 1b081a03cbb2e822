"""What a document says about itself: the names, codes and dates that tell it from similar ones.

Passages of a quarterly report or an incident report rarely name their company, period or aircraft;
the cover page and the file name do, and questions do. The identity is a short line built from the
title, the file name's words and the salient terms of the first page, in the order they appear:

- codes: words that mix letters and digits (`N5921D`, `PA-22-150`, `Q2`, `FY2023`, `10-Q`);
- dates and periods: `12/08/2007`, `2023-06-30`, `June 30, 2023`, `December 2007`, years;
- names: runs of capitalised words that are not a form's labels (`Tallahassee`, `Acme Corp`).

It is put before every passage of the document (keyword text and embedded text), so a passage can
be matched by the identity of the document it comes from. Nothing here knows any particular set of
documents: it reads only the document's own name and first page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rag.types import ExtractedDocument

MAX_ITEMS = 20
MAX_CHARS = 200
FIRST_PAGE_CHARS = 2500  # documents without pages: this much of the start stands for the first page
SEPARATOR = " · "

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DATE = re.compile(
    r"\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"  # 12/08/2007
    r"|\b\d{4}-\d{2}-\d{2}\b"  # 2023-06-30
    rf"|\b(?:{_MONTHS})\.?\s+\d{{1,2}},?\s+\d{{4}}\b"  # June 30, 2023
    rf"|\b\d{{1,2}}\s+(?:{_MONTHS})\.?\s+\d{{4}}\b"  # 30 June 2023
    rf"|\b(?:{_MONTHS})\.?\s+\d{{4}}\b"  # December 2007
    r"|\b(?:first|second|third|fourth)\s+quarter\b",
    re.IGNORECASE,
)
# A word with both a letter and a digit, hyphens and dots inside allowed: N5921D, PA-22-150, FY2023.
_CODE = re.compile(r"\b(?=[\w\-.]*\d)(?=[\w\-.]*[A-Za-z])[A-Za-z0-9]+(?:[\-.][A-Za-z0-9]+)*\b")
_YEAR = re.compile(r"\b(?:19|20)\d{2}\b")
# A run of capitalised words on one line (initials and short joiners allowed), e.g. "Willis O Forman".
_NAME = re.compile(r"\b[A-Z][\w'&\-]*(?:[ \t]+(?:(?:of|and|de|du|la|von|van|&)[ \t]+)?[A-Z][\w'&\-]*)*")
_MAX_CODE = 24  # longer mixed strings are hashes and ids nobody types in a question
# Words that start a sentence or label a form rather than name anything.
_GENERIC = frozenset(
    """
    a an and are as at be but by for from has have he her his i if in into is it its no not of on or our
    she so that the their then there these they this to was we were what when where which who will with
    page date time name number type total none yes n/a report table contents section part item note
    """.split()
)
_SPACE = re.compile(r"\s+")
_PERIOD = r"(?:19|20)\d{2}|Q[1-4]|H[12]"
_GLUED_DATE = re.compile(r"\b((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\b")
_GLUED_PERIOD = re.compile(rf"(?i)\b({_PERIOD})({_PERIOD}|FY\d{{2,4}})\b")  # 2023Q2, Q2FY24


def document_identity(doc: ExtractedDocument, title: str = "") -> str:
    """The document's identity line: file-name words, title, salient first-page terms; short."""
    items: list[str] = []
    seen: set[str] = set()
    for item in _candidates(doc, title):
        key = item.casefold()
        if key in seen or any(key in s for s in seen if len(key) < len(s)):
            continue
        seen.add(key)
        items.append(item)
        if len(items) >= MAX_ITEMS or sum(len(i) + len(SEPARATOR) for i in items) >= MAX_CHARS:
            break
    line = SEPARATOR.join(items)
    return line if len(line) <= MAX_CHARS else line[:MAX_CHARS].rsplit(" ", 1)[0]


def name_words(name: str) -> str:
    """A file name as words: `2023 Q1 ACME.pdf` → `2023 Q1 ACME`, `acme_q2-report.md` → `acme q2 report`."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    words = re.sub(r"[_\-+.,()\[\]]+", " ", stem)
    words = _GLUED_PERIOD.sub(r"\1 \2", words)  # 2023Q2 → 2023 Q2, Q2FY24 → Q2 FY24
    words = _GLUED_DATE.sub(r"\1-\2-\3", words)  # 20230630 → 2023-06-30
    return _SPACE.sub(" ", words).strip()


def first_page(doc: ExtractedDocument) -> str:
    """The text of the first page (PDF) or the document's first few thousand characters."""
    if not doc.sections:
        return ""
    page = doc.sections[0].page
    if page is not None:
        text = "\n".join(s.text for s in doc.sections if s.page == page)
    else:
        text = "\n".join(s.text for s in doc.sections[:20])
    return text[:FIRST_PAGE_CHARS]


def _candidates(doc: ExtractedDocument, title: str) -> Iterator[str]:
    title = _SPACE.sub(" ", title).strip()
    in_title = set(title.casefold().split())
    words = " ".join(w for w in name_words(doc.name).split() if w.casefold() not in in_title)
    if title:
        yield title
    if words:
        yield words
        yield from filter(None, map(_spelled_date, _NUMERIC_DATE_IN.findall(words)))
    common = lower_case_words(" ".join(section.text for section in doc.sections))
    yield from salient_terms(first_page(doc), common)


def lower_case_words(text: str) -> set[str]:
    """The words `text` writes in lower case somewhere: capitalised elsewhere, they start a sentence
    ("However", "Recently") rather than name anything."""
    return set(_LOWER_WORD.findall(text))


_LOWER_WORD = re.compile(r"\b[a-z][\w'\-]*")


def salient_terms(text: str, common: set[str] | None = None) -> Iterator[str]:
    """Codes, dates and names of `text`, in order of appearance (a name only where it is not a label,
    nor a word that `text` or `common` writes in lower case)."""
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for pattern in (_DATE, _CODE, _YEAR):
        for match in pattern.finditer(text):
            if _overlaps(match.span(), taken) or (pattern is _CODE and not _is_code(text, match)):
                continue
            taken.append(match.span())
            found.append((match.start(), _SPACE.sub(" ", match.group())))
    # Names are read with the codes and dates blanked out, so "Piper PA-22-150" gives "Piper".
    masked = list(text)
    for start, end in taken:
        masked[start:end] = "\n" * (end - start)
    plain = "".join(masked)
    lower = lower_case_words(text) | (common or set())
    for match in _NAME.finditer(plain):
        name = _name(plain, match, lower)
        if name:
            found.append((match.start(), name))
    for _, term in sorted(found):
        yield term
        other = _spelled_date(term) or _other_quarter(term)
        if other:
            yield other


_NUMERIC_DATE_IN = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_NUMERIC_DATE = re.compile(r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})|(\d{4})-(\d{2})-(\d{2})")
_MONTH_NAMES = "January February March April May June July August September October November December".split()


def _spelled_date(term: str) -> str:
    """`12/08/2007` → `December 8, 2007` (month first, as US forms write it; day first when the first
    number cannot be a month); `2023-06-30` → `June 30, 2023`. "" for anything else."""
    match = _NUMERIC_DATE.fullmatch(term)
    if not match:
        return ""
    if match.group(4):
        year, month, day = int(match.group(4)), int(match.group(5)), int(match.group(6))
    else:
        month, day, year = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if month > 12:
            month, day = day, month
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return ""
    return f"{_MONTH_NAMES[month - 1]} {day}, {year}"


_ORDINALS = ("first", "second", "third", "fourth")


def _other_quarter(term: str) -> str:
    """A quarter written the other way: `Q2` ↔ `second quarter` (questions use both)."""
    lower = term.casefold()
    if len(lower) == 2 and lower[0] == "q" and lower[1] in "1234":
        return f"{_ORDINALS[int(lower[1]) - 1]} quarter"
    for i, ordinal in enumerate(_ORDINALS):
        if lower == f"{ordinal} quarter":
            return f"Q{i + 1}"
    return ""


def _is_code(text: str, match: re.Match[str]) -> bool:
    """A real code (`N5921D`, `PA-22-150`, `Q2`), not a measure (`90-day`, `1,500-foot`) or a hash."""
    code = match.group()
    if len(code) > _MAX_CODE or text[max(0, match.start() - 1) : match.start()] in {",", "."}:
        return False
    parts = re.split(r"[\-.]", code)
    return not any(p.isalpha() and p.islower() and len(p) >= 3 for p in parts)


def _name(text: str, match: re.Match[str], lower: set[str]) -> str:
    """The capitalised run as a name, or "" when it is a label (`Location:`) or common words only: a
    word the text also writes in lower case (`The`, `Examination`) is capitalised by position."""
    words = match.group().split()
    if len(words) > 1 and words[0].isupper() and not words[1].isupper():
        words = words[:1]  # "FL Accident Number:" is a state code followed by the next label
    elif text[match.end() : match.end() + 1] == ":":
        return ""
    while words and (words[0].casefold() in _GENERIC or words[0].casefold() in lower):
        words.pop(0)
    if not words or all(w.casefold() in _GENERIC or w.casefold() in lower for w in words):
        return ""
    name = " ".join(words)
    if len(name) > 60 or (len(name) < 3 and not name.isupper()):
        return ""
    return name


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


_QUESTION_WORDS = frozenset(
    """
    how what why where when who whose whom which whats did does do can could should would according
    tell list give show name describe explain compare about roughly approximately around nearly
    during after before since until for from between in on at by with
    """.split()
)


def question_terms(question: str) -> list[str]:
    """The names, codes and dates a question names ("Piper", "N112ED", "December 8, 2007"); a term
    that can be written two ways carries both, split by "|" ("Q2|second quarter")."""
    terms: list[str] = []
    for term in salient_terms(question):
        words = [w for w in term.split() if w.casefold() not in _QUESTION_WORDS]
        if not words:
            continue
        term = " ".join(words)
        if terms and term in (_spelled_date(terms[-1]), _other_quarter(terms[-1])):
            terms[-1] += f"|{term}"
        else:
            terms.append(term)
    return terms


def words_of(text: str) -> set[str]:
    """Lower-case whole words, possessives dropped: what a term must share with an identity to match."""
    return {w.casefold().removesuffix("'s").removesuffix("’s") for w in _WORDS.findall(text)}


_WORDS = re.compile(r"[^\W_](?:[\w'’.\-/]*[^\W_])?")


def names(identity_words: set[str], term: str) -> bool:
    """Whether an identity (as `words_of`) states the question's term: all the words of one of its
    ways of writing it."""
    return any(words_of(way) <= identity_words for way in term.split("|"))
