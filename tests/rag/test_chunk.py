"""Chunks fit the model's real window, lose no text, and keep their place in the document."""

from __future__ import annotations

import re

import pytest

from rag import chunk as chunking
from rag.chunk import blocks, chunk_document
from rag.embed import SentenceEmbedder
from rag.types import ExtractedDocument, Section


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_no_chunk_exceeds_the_model_window_and_no_text_is_lost(embedder: SentenceEmbedder) -> None:
    paragraph = " ".join(
        f"Sentence {i} mentions pneumonoultramicroscopic zymurgy and ERR_{i:04d}." for i in range(60)
    )
    long_word = "x" * 3000  # one "word" far longer than the window must still be split
    section = Section(
        text=f"{paragraph}\n\n{long_word}\n\nShort closing paragraph.", heading="Intro > Details"
    )
    chunks = chunk_document(ExtractedDocument("a.txt", "text", (section,)), embedder)

    assert len(chunks) > 3
    for chunk in chunks:
        # [CLS] and [SEP] take two of the model's max_seq_length positions.
        assert len(embedder.token_spans(chunk.text)) <= embedder.max_tokens - 2
    # Every chunk starts with the same context: the document's identity (title "Intro", file name
    # "a", its first codes) and the rest of the heading path.
    header = chunks[0].text.split("\n\n", 1)[0]
    assert header.startswith("Intro · a · ") and "ERR_0000" in header and header.endswith("\nDetails")
    assert all(c.text.startswith(header + "\n\n") for c in chunks)
    joined = "".join(_words("".join(c.text.removeprefix(header + "\n\n") for c in chunks)))
    assert joined == "".join(_words(section.text))


def test_chunks_break_at_paragraphs_and_sentences(embedder: SentenceEmbedder) -> None:
    paras = [" ".join(f"Topic {p} sentence {s} is here." for s in range(12)) for p in range(8)]
    doc = ExtractedDocument("b.md", "markdown", (Section(text="\n\n".join(paras), line_start=1),))
    chunks = chunk_document(doc, embedder)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.rstrip().endswith(".")  # never cut in the middle of a sentence here


def test_page_heading_and_lines_are_kept(embedder: SentenceEmbedder) -> None:
    sections = (
        Section(text="First page text.", page=1),
        Section(text="line one\nline two\n\nline four", heading="Setup", line_start=10, line_end=13),
    )
    chunks = chunk_document(ExtractedDocument("c.pdf", "pdf", sections), embedder)
    assert chunks[0].page == 1 and chunks[0].locator() == "p. 1"
    assert chunks[1].heading == "Setup" and (chunks[1].line_start, chunks[1].line_end) == (10, 13)
    assert chunks[1].locator() == "Setup"
    assert [c.index for c in chunks] == [0, 1]


def test_repeated_boilerplate_is_stored_once(embedder: SentenceEmbedder) -> None:
    notice = "Confidential — do not distribute."
    sections = (*(Section(text=notice, page=p) for p in range(1, 6)), Section(text="Body.", page=6))
    chunks = chunk_document(ExtractedDocument("d.pdf", "pdf", sections), embedder)
    identity = chunks[0].text.split("\n\n", 1)[0]  # the file name's word, and "Confidential"
    assert identity.startswith("d")
    assert [c.text for c in chunks] == [f"{identity}\n\n{notice}", f"{identity}\n\nBody."]


def test_every_chunk_of_a_titled_text_carries_its_title(embedder: SentenceEmbedder) -> None:
    body = "\n\n".join(
        " ".join(f"Finding {p}.{s} about hepcidin levels." for s in range(15)) for p in range(6)
    )
    text = f"Hepcidin and oxidant status in children\n\nhttps://example.org/paper\n\n{body}"
    chunks = chunk_document(
        ExtractedDocument("paper.txt", "text", (Section(text=text, line_start=1),)), embedder
    )
    assert len(chunks) > 2
    assert all(c.text.startswith("Hepcidin and oxidant status in children · paper") for c in chunks)
    # the identity line, then the text as written, which starts with the title itself
    assert chunks[0].text.split("\n\n", 2)[1] == "Hepcidin and oxidant status in children"


def test_a_first_line_that_is_a_sentence_is_not_a_title(embedder: SentenceEmbedder) -> None:
    doc = ExtractedDocument("n.txt", "text", (Section(text="This is a note.\nIt continues here."),))
    assert chunk_document(doc, embedder)[0].text == "n\n\nThis is a note.\nIt continues here."


def test_adjacent_plain_text_sections_are_chunked_as_one_run(embedder: SentenceEmbedder) -> None:
    first = "\n".join(f"Line {i} says something about topic {i}." for i in range(1, 11))
    second = "\n".join(f"Line {i} says something about topic {i}." for i in range(12, 22))
    sections = (
        Section(text=first, line_start=1, line_end=10),
        Section(text=second, line_start=12, line_end=21),  # a blank line 11 between them
    )
    chunks = chunk_document(ExtractedDocument("n.txt", "text", sections), embedder)
    assert len(chunks) == 1  # one chunk, not a half-empty one per section
    assert (chunks[0].line_start, chunks[0].line_end) == (1, 21)
    assert "Line 10 says" in chunks[0].text and "Line 12 says" in chunks[0].text


def test_sections_of_different_pages_or_headings_stay_apart(embedder: SentenceEmbedder) -> None:
    sections = (Section(text="Page one.", page=1), Section(text="Page two.", page=2))
    assert [c.page for c in chunk_document(ExtractedDocument("p.pdf", "pdf", sections), embedder)] == [1, 2]


def test_every_chunk_carries_the_identity_its_document_states_on_its_first_page(
    embedder: SentenceEmbedder,
) -> None:
    cover = (
        "Quarterly Report\n\nAcme Industries Inc.\nFor the quarter ended June 30, 2023\n"
        "Commission file number 001-12345\n"
    )
    body = "\n\n".join(
        " ".join(f"Revenue grew in segment {p} during the period." for _ in range(12)) for p in range(5)
    )
    doc = ExtractedDocument(
        "2023 Q2 acme.pdf", "pdf", (Section(text=cover, page=1), Section(text=body, page=2))
    )
    chunks = chunk_document(doc, embedder)
    assert len(chunks) > 2
    identity = chunks[0].text.split("\n", 1)[0]
    for term in ("Quarterly Report", "2023 Q2 acme", "Acme Industries Inc", "June 30, 2023"):
        assert term in identity
    assert all(c.text.startswith(identity + "\n") for c in chunks)  # page 2's too
    assert all(len(embedder.token_spans(c.text)) <= embedder.max_tokens - 2 for c in chunks)


def test_a_huge_section_is_tokenized_in_bounded_blocks_that_keep_text_and_lines() -> None:
    text = "\n\n".join(f"Paragraph {i} line one.\nParagraph {i} line two." for i in range(3000))
    section = Section(text=text, line_start=1, line_end=text.count("\n") + 1)
    pieces = [block.section for block in blocks(section, limit=5_000)]
    assert len(pieces) > 10 and all(len(b.text) <= 5_000 for b in pieces)
    assert "".join(_words(" ".join(b.text for b in pieces))) == "".join(_words(text))
    lines = text.splitlines()
    for block in pieces:  # each block's line numbers are where its text stands in the section
        assert block.line_start is not None and block.line_end is not None
        assert block.text.splitlines() == lines[block.line_start - 1 : block.line_end]


def test_a_section_read_in_blocks_gives_the_passages_it_gives_read_whole(
    embedder: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No half-empty passage where a block ends: the unfinished one goes on into the next block."""
    text = "\n\n".join(
        f"Paragraph {i} says that the {i % 7}th valve opens at {i * 3} kPa." + " It holds." * (i % 5)
        for i in range(400)
    )
    lines = text.count("\n") + 1
    doc = ExtractedDocument("valves.txt", "text", (Section(text=text, line_start=1, line_end=lines),))
    monkeypatch.setattr(chunking, "MAX_BLOCK_CHARS", 10**9)
    whole = chunk_document(doc, embedder)
    monkeypatch.setattr(chunking, "MAX_BLOCK_CHARS", 3_000)
    in_blocks = chunk_document(doc, embedder)
    assert len(text) > 10 * 3_000
    assert [(c.text, c.line_start, c.line_end) for c in in_blocks] == [
        (c.text, c.line_start, c.line_end) for c in whole
    ]
