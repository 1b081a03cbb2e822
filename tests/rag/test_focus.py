"""Answers without a language model quote the sentence that answers, not whole passages."""

from __future__ import annotations

import time

import pytest

from rag.embed import SentenceEmbedder
from rag.focus import sentences
from tests.conftest import EngineFactory

KB = "kb-focus"
ARTICLE = b"""# The SAIBK coronavirus genome

## Abstract

We report the complete genome of a coronavirus isolated from a bat in Hubei province. The sample was
collected during a field survey in 2014 and sequenced with short reads. Phylogenetic analysis places
the virus within the betacoronaviruses, close to other bat isolates from southern China.

## Results

The SAIBK genome is 27,534 nucleotides long and contains eleven open reading frames. Its spike protein
shares 78% amino acid identity with that of its closest relative. Recombination analysis found two
breakpoints in the polymerase gene. The virus did not grow in any of the three cell lines tested.

## Discussion

Bats remain the main reservoir of these viruses, and surveillance of wild populations should continue.
"""


async def test_an_extractive_answer_quotes_the_sentence_that_holds_the_fact(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    await engine.ingest(KB, "saibk.md", ARTICLE)
    answer = await engine.ask(KB, "How long is the SAIBK genome?")
    assert answer.mode == "extractive"
    quoted = answer.text.split("\n\n")[1:]
    assert 1 <= len(quoted) <= 3
    assert "27,534 nucleotides" in quoted[0] and quoted[0].endswith("[1]")
    assert "#" not in answer.text and "Hubei province" not in answer.text  # no headings, no whole passage
    assert answer.citations[0].document == "saibk.md"  # the passage stays, as the source


def test_sentences_leave_out_context_lines_and_markup() -> None:
    passage = (
        "Guide · guide.md\nSetup > Linux\n\n"
        "## Install\n\n- Run **make install** first.\n- Then run make test."
    )
    assert sentences(passage) == ["Run make install first.", "Then run make test."]


def _section(title: str, sentences_: list[str], repeat: int = 6) -> str:
    return f"## {title}\n\n" + " ".join(sentences_ * repeat) + "\n\n"


# Passages that speak of the SAIBK genome without saying how long it is, and one, mostly about field
# work, whose one sentence gives the length.
GENOME_REPORT = (
    "# SAIBK field report\n\n"
    + _section("Annotation", ["The SAIBK genome annotation lists the genes of the SAIBK genome."])
    + _section("Comparison", ["We compared the SAIBK genome with the genomes of related viruses."])
    + _section("Quality", ["Coverage of the SAIBK genome was even across the genome assembly."])
    + "## Field work\n\n"
    + "Traps were set at dusk near the cave entrance and checked every two hours. " * 6
    + "Sequencing showed that the complete SAIBK genome is 27,534 nucleotides long. "
    + "Samples were stored in liquid nitrogen and shipped to the laboratory within a week. " * 6
    + "\n\n"
    + _section("Browser", ["A browser for the SAIBK genome shows each genome feature."])
)


async def test_the_passage_whose_sentence_answers_comes_first_in_what_the_answer_is_written_from(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    await engine.ingest(KB, "field-report.md", GENOME_REPORT.encode())
    question = "What is the size of the SAIBK genome?"
    searched = await engine.search(KB, question, top_k=10)
    given = await engine.passages(KB, question)
    assert "27,534" not in searched[0].text  # the search alone ranks a passage about the genome first
    assert len(given) == 5
    assert "27,534" in given[0].text


async def test_the_sentences_an_answer_is_ranked_by_are_embedded_as_question_work(
    make_engine: EngineFactory, embedder: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not as bulk work: that waits behind an ingest's sub-batches and yields to every question under
    way, this one's too (engine.passages holds its question open: 1 s a sub-batch of 8 sentences,
    44 s for ten passages of short sentences)."""
    engine = make_engine()
    parts = " ".join(f"Pump {n} seal {n * 7} is rated for {n * 40} bar." for n in range(300))
    await engine.ingest(KB, "pump-seals.md", f"# Pump seals\n\n{parts}\n".encode())

    def bulk() -> None:
        raise AssertionError("a question's sentences were queued as bulk work")

    monkeypatch.setattr(embedder._gate, "bulk", bulk)
    started = time.monotonic()
    given = await engine.passages(KB, "Which pump seal is rated for 2,000 bar?")
    answer = await engine.ask(KB, "What is seal 91 of pump 13 rated for?")
    assert len(given) == 5 and answer.citations
    assert time.monotonic() - started < 10
