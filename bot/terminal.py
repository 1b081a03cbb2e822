"""Our Markdown as plain terminal text: for `threadwise chat`, `ask` and `docs`."""

from __future__ import annotations

import re

_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def markdown_to_plain(md: str) -> str:
    """Terminal text from our Markdown: drop emphasis marks, keep link targets visible. Inline code
    is shown as it is, without its backticks (a document name like `_draft_.md` keeps its `_`)."""
    pieces = _CODE_SPAN.split(md)  # prose, code, prose, code, …, prose
    return "".join(piece if i % 2 else _prose_to_plain(piece) for i, piece in enumerate(pieces))


def _prose_to_plain(md: str) -> str:
    plain = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 <\2>", md)
    plain = re.sub(r"(?<![\w*])[*_]{1,2}([^*_\n]+)[*_]{1,2}(?![\w*])", r"\1", plain)
    return plain
