"""Structured documents (web pages, Word): an outline of headings and the text blocks under them."""

from __future__ import annotations

from rag.types import Section


class _Outline:
    """Collects text blocks under the current heading path and closes a Section at each heading."""

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []
        self._blocks: list[str] = []
        self._tight = False
        self.sections: list[Section] = []

    def heading(self, level: int, title: str) -> None:
        self.close()
        self._path = [*(entry for entry in self._path if entry[0] < level), (level, title)]
        self._blocks.append(title)

    def block(self, text: str, *, tight: bool = False) -> None:
        """Add a paragraph; `tight` ones (list items, table rows) follow each other without a gap."""
        if not text.strip():
            return
        if self._blocks:
            self._blocks.append("\n" if tight and self._tight else "\n\n")
        self._blocks.append(text)
        self._tight = tight

    def close(self) -> None:
        text = "".join(self._blocks).strip()
        if text:
            self.sections.append(Section(text=text, heading=" > ".join(title for _, title in self._path)))
        self._blocks = []
        self._tight = False
