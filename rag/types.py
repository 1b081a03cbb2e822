"""Plain data passed between the engine's stages and to its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rag.scopes import Visibility


@dataclass(frozen=True)
class Section:
    """A run of text from one place in a document, as the extractor found it.

    `page` is 1-based (PDF), `heading` the heading path ("Setup > Linux"), `line_start`/`line_end`
    1-based lines of the source text where the format has lines.
    """

    text: str
    page: int | None = None
    heading: str = ""
    line_start: int | None = None
    line_end: int | None = None


@dataclass(frozen=True)
class ExtractedDocument:
    name: str
    kind: str  # "pdf", "docx", "html", "markdown", "rst", "text", "json", "yaml", "csv", "code"
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class Chunk:
    text: str
    index: int
    page: int | None = None
    heading: str = ""
    line_start: int | None = None
    line_end: int | None = None

    def locator(self) -> str:
        """Where in the document this chunk is, for a citation: page, section or lines."""
        parts = []
        if self.page is not None:
            parts.append(f"p. {self.page}")
        if self.heading:
            parts.append(self.heading)
        if not parts and self.line_start is not None:
            if self.line_end and self.line_end != self.line_start:
                parts.append(f"lines {self.line_start}-{self.line_end}")
            else:
                parts.append(f"line {self.line_start}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with where it came from."""

    text: str
    document: str
    locator: str
    score: float
    chunk_id: str
    url: str | None = None


@dataclass(frozen=True)
class Citation:
    number: int
    document: str
    locator: str
    url: str | None = None
    excerpt: str = ""  # the start of the cited passage, for platforms that show it (Teams' pop-ups)

    def label(self) -> str:
        return f"{self.document} ({self.locator})" if self.locator else self.document


@dataclass(frozen=True)
class Turn:
    """One earlier exchange in a conversation thread."""

    role: Literal["user", "assistant"]
    text: str


AnswerMode = Literal["llm", "extractive", "not_found"]


@dataclass(frozen=True)
class Answer:
    text: str
    citations: tuple[Citation, ...]
    mode: AnswerMode
    language: str = "en"
    cached: bool = False


@dataclass(frozen=True)
class DocumentInfo:
    name: str
    sha256: str
    version: str
    chunks: int
    uploader: str
    uploaded_at: float  # unix seconds
    size: int
    kind: str
    url: str | None = None
    scope: str = "workspace"  # who may see it: rag/scopes.py


IngestStatus = Literal["added", "replaced", "unchanged", "rescoped"]


@dataclass(frozen=True)
class Upload:
    """One file to ingest: its document name, its bytes, who sent it and where it lives.

    A document of the same name is replaced only when `uploader` uploaded it or the upload is
    `trusted` (an admin, the operator's `threadwise ingest`). A replaced document keeps its
    uploader unless `claim` says the upload takes it over (`threadwise ingest --uploader`). `scope`:
    who may see it (rag/scopes.py); None keeps a replaced document's scope, and gives a new one
    `new_scope`.
    """

    name: str
    data: bytes
    uploader: str = ""
    url: str | None = None
    trusted: bool = False
    claim: bool = False
    scope: str | None = None
    new_scope: str = "workspace"
    # What the uploader may see where they send it (None: everything): another person's document
    # outside it is refused without being named (rag.documents.NameTaken).
    sees: Visibility | None = None


@dataclass(frozen=True)
class IngestResult:
    document: str
    status: IngestStatus
    chunks: int
    seconds: float
    embedded: int = 0  # chunks whose vectors had to be computed (not reused)
    scope: str = "workspace"  # who may see the document now (rag/scopes.py)


@dataclass(frozen=True)
class KbStats:
    kb: str
    documents: int
    chunks: int
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineLimits:
    """What the engine accepts of a file, and how long its passages may be."""

    max_bytes: int
    allowed_types: frozenset[str]
    chunk_tokens: int = 256
