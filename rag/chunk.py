"""Split extracted sections into chunks that fit the embedding model's token window.

all-MiniLM-L6-v2 silently truncates input past `max_seq_length` (256 word pieces, [CLS] and [SEP]
included), so a chunk longer than that would be partly invisible to retrieval. Chunks are therefore
cut by the model's own tokenizer: at most `max_tokens - 2` pieces including the heading line that is
prepended for context, cut at the strongest boundary available (paragraph, sentence, line, word).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from rag.errors import UserFacingError
from rag.identity import document_identity
from rag.types import Chunk, ExtractedDocument, Section

# Control characters a format can carry (JSON "\u0000", YAML "\0") but no reader shows; dropped
# so that no renderer downstream meets them. Tab, newline and form feed stay (line numbers).
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
MAX_BLOCK_CHARS = 20_000  # the most text handed to the tokenizer at once (bounds its memory)
# A file cut into more passages (or with more word pieces than that many passages hold) is refused:
# it would hold an ingest slot for many minutes. 5,000 passages are ~1.3 million word pieces.
MAX_PASSAGES = 5_000
MAX_HEADING_TOKENS = 48
MAX_IDENTITY_TOKENS = 64
_SENTENCE_END = ".!?:;。！？"


class Tokenizer(Protocol):
    max_tokens: int

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


def chunk_document(
    doc: ExtractedDocument, tokenizer: Tokenizer, *, max_tokens: int | None = None
) -> list[Chunk]:
    window = min(max_tokens or tokenizer.max_tokens, tokenizer.max_tokens) - 2
    title = document_title(doc)
    identity = _fit(document_identity(doc, title), tokenizer, MAX_IDENTITY_TOKENS, keep="start")
    chunks: list[Chunk] = []
    seen: set[str] = set()
    too_long = UserFacingError(
        f"{doc.name} is too long: over {MAX_PASSAGES:,} passages. Please split it into smaller files."
    )
    tokens = 0
    for merged in merge_adjacent([replace(s, text=_CONTROLS.sub("", s.text)) for s in doc.sections]):
        for block in blocks(merged, MAX_BLOCK_CHARS):
            spans = tokenizer.token_spans(block.section.text)
            tokens += len(spans)
            if tokens > MAX_PASSAGES * window:  # refused before any more work: it could not fit
                raise too_long
            found, block.consumed = _chunk_section(
                block.section, spans, tokenizer, window, title, identity, last=block.last
            )
            for chunk in found:
                # Repeated boilerplate (a disclaimer on every page) is stored and embedded once.
                if chunk.text in seen:
                    continue
                seen.add(chunk.text)
                chunks.append(replace(chunk, index=len(chunks)))
                if len(chunks) > MAX_PASSAGES:
                    raise too_long
    return chunks


def merge_adjacent(sections: Sequence[Section]) -> list[Section]:
    """Join consecutive sections that share heading and page and follow each other line by line.

    Extractors cut long plain text into sections of convenient size, not meaning; chunking each
    separately would end every one with a short, half-empty chunk. Lines are joined so that line
    numbers stay exact.
    """
    merged: list[Section] = []
    for section in sections:
        last = merged[-1] if merged else None
        gap = _line_gap(last, section) if last else None
        if last is None or gap is None:
            merged.append(section)
            continue
        merged[-1] = Section(
            text=last.text + "\n" * gap + section.text,
            page=last.page,
            heading=last.heading,
            line_start=last.line_start,
            line_end=section.line_end,
        )
    return merged


@dataclass
class Block:
    """A piece of a section the tokenizer is given at once. The chunker says how many of its characters
    it used (`consumed`): it keeps back the unfinished last passage of a block that is not the
    section's last, and that text starts the next block instead of ending in a half-empty passage."""

    section: Section
    last: bool
    consumed: int = 0


def blocks(section: Section, limit: int = MAX_BLOCK_CHARS) -> Iterator[Block]:
    """The section in blocks of at most `limit` characters, cut at paragraph breaks where it has them,
    else at line breaks or spaces, with their own line numbers, each starting where the chunker
    stopped in the one before: the tokenizer is given one block at a time, so a huge section (10 MB
    of text on one page) costs a block's memory, not gigabytes of offsets."""
    text = section.text
    start = 0
    line = section.line_start
    while start < len(text):
        last = len(text) - start <= limit
        end = len(text) if last else _block_end(text, start, limit)
        piece = text[start:end]
        end_line = line + piece.count("\n") if line is not None else None
        block = Block(replace(section, text=piece, line_start=line, line_end=end_line), last)
        yield block
        stop = start + (block.consumed if 0 < block.consumed < len(piece) else len(piece))
        stop = _skip_space(text, stop)
        line = line + text.count("\n", start, stop) if line is not None else None
        start = stop


def _block_end(text: str, start: int, limit: int) -> int:
    for sep in ("\n\n", "\n", " "):
        cut = text.rfind(sep, start + limit // 2, start + limit)
        if cut > start:
            return cut
    return start + limit


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \n":
        i += 1
    return i


def _line_gap(before: Section, after: Section) -> int | None:
    """Newlines that join `before` to `after` keeping line numbers, or None if they don't continue."""
    if (before.heading, before.page) != (after.heading, after.page):
        return None
    if before.line_end is None or after.line_start is None or before.line_start is None:
        return None
    if before.line_start + before.text.count("\n") != before.line_end:
        return None  # its text does not map line for line onto the source
    gap = after.line_start - before.line_end
    return gap if 1 <= gap <= 3 else None


def document_title(doc: ExtractedDocument) -> str:
    """The document's title: its top heading, or a short first line standing alone as a title."""
    if not doc.sections:
        return ""
    first = doc.sections[0]
    if first.heading:
        return first.heading.split(" > ")[0]
    head, _, rest = first.text.strip().partition("\n")
    head = head.strip()
    standalone = not rest or rest.startswith("\n") or rest.lstrip(" \t").startswith("\n")
    if 0 < len(head) <= 200 and standalone and not head.endswith((".", ":", ",", ";")):
        return head
    return ""


def _context(section: Section, title: str, identity: str) -> str:
    """The lines put before each chunk so it carries its document and place: the document's identity
    (which starts with its title) and the section's heading path, or the title and heading path."""
    if not identity:
        if not section.heading:
            return title
        if not title or section.heading.split(" > ")[0] == title:
            return section.heading
        return f"{title} > {section.heading}"
    path = section.heading
    if title and path.split(" > ")[0] == title:
        path = path.removeprefix(title).removeprefix(" > ")
    return f"{identity}\n{path}" if path else identity


def _chunk_section(
    section: Section,
    spans: Sequence[tuple[int, int]],
    tokenizer: Tokenizer,
    window: int,
    title: str,
    identity: str,
    *,
    last: bool = True,
) -> tuple[list[Chunk], int]:
    """The section's chunks (numbered from 0), and how many of its characters they hold: all of
    them, unless the section is not `last` — then the unfinished last passage is left out, for the
    text that follows to complete."""
    text = section.text
    if not spans:
        return [], len(text)
    heading = _fit(_context(section, title, identity), tokenizer, MAX_HEADING_TOKENS + MAX_IDENTITY_TOKENS)
    budget = window - (len(tokenizer.token_spans(heading)) + 1 if heading else 0)
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]
    windows = _windows(text, spans, budget)
    consumed = len(text)
    if not last and len(windows) > 1:
        consumed = spans[windows[-1][0]][0]
        windows = windows[:-1]
    out: list[Chunk] = []
    for start, end in windows:
        body = text[spans[start][0] : spans[end - 1][1]].strip()
        if not body:
            continue
        lines = _line_range(section, newlines, spans[start][0], spans[end - 1][1])
        out.append(
            Chunk(
                text=f"{heading}\n\n{body}" if heading and not body.startswith(heading) else body,
                index=len(out),
                page=section.page,
                heading=section.heading,
                line_start=lines[0],
                line_end=lines[1],
            )
        )
    return out, consumed


def _windows(text: str, spans: Sequence[tuple[int, int]], budget: int) -> list[tuple[int, int]]:
    """Token index ranges [start, end) of at most `budget` tokens, cut at the best boundary."""
    out = []
    start = 0
    n = len(spans)
    while start < n:
        end = min(start + budget, n)
        if end < n:
            end = _best_cut(text, spans, start + max(1, budget // 2), end)
        out.append((start, end))
        start = end
    return out


def _best_cut(text: str, spans: Sequence[tuple[int, int]], lo: int, hi: int) -> int:
    """The token index in (lo, hi] before which to cut: the latest strongest boundary."""
    best, best_rank = hi, 0
    for k in range(hi, lo, -1):
        rank = _boundary_rank(text, spans[k - 1], spans[k])
        if rank > best_rank:
            best, best_rank = k, rank
            if rank == 4:
                break
    return best


def _boundary_rank(text: str, prev: tuple[int, int], nxt: tuple[int, int]) -> int:
    gap = text[prev[1] : nxt[0]]
    if not gap:
        return 0  # inside a word: cut only when nothing better exists
    if gap.count("\n") >= 2:
        return 4
    if text[prev[1] - 1] in _SENTENCE_END:
        return 3
    if "\n" in gap:
        return 2
    return 1


def _fit(heading: str, tokenizer: Tokenizer, limit: int, keep: str = "end") -> str:
    """`heading` cut to `limit` tokens. A heading path keeps its end, the innermost part, which says
    most about the chunk; an identity keeps its start (name, title, first salient terms)."""
    if not heading:
        return ""
    spans = tokenizer.token_spans(heading)
    if len(spans) <= limit:
        return heading
    if keep == "start":
        return heading[: spans[limit - 1][1]].rstrip(" ·") + " …"
    cut = spans[len(spans) - limit][0]
    return "…" + heading[cut:]


def _line_range(section: Section, newlines: list[int], start: int, end: int) -> tuple[int | None, int | None]:
    if section.line_start is None:
        return None, None
    first = section.line_start + bisect.bisect_left(newlines, start)
    last = section.line_start + bisect.bisect_left(newlines, end)
    return first, last
