"""Answers without a language model quote the sentence that answers, not whole passages."""

from __future__ import annotations

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
