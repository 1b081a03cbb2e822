"""A citation keeps the start of its passage, in answers and in the shared query cache."""

from __future__ import annotations

import json

from rag.prompt import EXCERPT_CHARS, citations_for
from rag.redis_cache import decode_answer, encode_answer
from rag.types import Answer, Citation, Passage


def test_a_citation_keeps_the_start_of_its_passage_on_one_line() -> None:
    passage = Passage("Rotate the\ncertificate   yearly. " + "x" * 1000, "vpn.md", "p. 1", 0.9, "c1")

    (citation,) = citations_for([passage])

    assert citation.excerpt.startswith("Rotate the certificate yearly. x")
    assert len(citation.excerpt) == EXCERPT_CHARS


def test_the_cache_keeps_excerpts_and_reads_entries_written_before_them() -> None:
    answer = Answer("Yearly [1].", (Citation(1, "vpn.md", "p. 1", None, "Rotate yearly."),), "llm")
    old = json.dumps(
        {"text": "Yearly [1].", "citations": [[1, "vpn.md", "p. 1", None]], "mode": "llm", "language": "en"}
    )

    assert decode_answer(encode_answer(answer)) == answer
    assert decode_answer(old.encode()).citations == (Citation(1, "vpn.md", "p. 1", None, ""),)
