"""Similar documents told apart: each passage carries its document's identity, and documents whose
identity matches the question's names, codes and dates rank first."""

from __future__ import annotations

import pytest

from rag.identity import document_identity, name_words, question_terms
from rag.types import ExtractedDocument, Section, Upload
from tests.conftest import EngineFactory

KB = "kb-filings"
COMPANIES = {"acme": "Acme Industries", "initech": "Initech Holdings"}
QUARTERS = {"q1": ("March 31, 2023", "first"), "q2": ("June 30, 2023", "second")}


def _report(company: str, quarter: str, revenue: int) -> bytes:
    """A quarterly report whose passages never name the company or the period: only its cover does."""
    ended, nth = QUARTERS[quarter]
    cover = f"QUARTERLY REPORT\n\n{COMPANIES[company]}\n\nFor the {nth} quarter ended {ended}\n\n"
    sections = (
        f"## Results of operations\n\nTotal revenue for the quarter was ${revenue:,} thousand, "
        "driven by higher volumes in the services segment and stable pricing.\n\n"
        "## Liquidity\n\nCash and equivalents remained sufficient to fund operations for the next "
        "twelve months. No borrowings were made under the credit facility.\n\n"
        "## Risk factors\n\nDemand for our services depends on general economic conditions, and "
        "a slowdown could reduce revenue. Competition remains intense in every market we serve.\n"
    )
    return (cover + sections).encode()


REVENUE = {
    ("acme", "q1"): 41_250,
    ("acme", "q2"): 43_870,
    ("initech", "q1"): 38_120,
    ("initech", "q2"): 39_990,
}


@pytest.fixture
async def filings(make_engine: EngineFactory):  # type: ignore[no-untyped-def]
    engine = make_engine()
    uploads = [
        Upload(f"{company}-{quarter}-2023.md", _report(company, quarter, revenue))
        for (company, quarter), revenue in REVENUE.items()
    ]
    await engine.ingest_many(KB, uploads)
    return engine


@pytest.mark.parametrize(
    ("question", "company", "quarter"),
    [
        ("What was Acme's total revenue for the quarter ended June 30, 2023?", "acme", "q2"),
        ("What was Initech's total revenue in the first quarter of 2023?", "initech", "q1"),
        ("Initech Holdings revenue, quarter ended June 30, 2023", "initech", "q2"),
        ("How much revenue did Acme Industries report for Q1 2023?", "acme", "q1"),
    ],
)
async def test_the_passage_comes_from_the_document_the_question_names(
    filings, question: str, company: str, quarter: str
) -> None:  # type: ignore[no-untyped-def]
    passages = await filings.search(KB, question, top_k=5)
    gold = f"{company}-{quarter}-2023.md"
    assert passages[0].document == gold
    # the figure is in that document's results passage, among the first (its cover page may lead)
    assert any(p.document == gold and f"{REVENUE[company, quarter]:,}" in p.text for p in passages[:2])


async def test_a_question_naming_no_document_still_finds_the_passage(filings) -> None:  # type: ignore[no-untyped-def]
    passages = await filings.search(KB, "Were any borrowings made under the credit facility?", top_k=5)
    assert "credit facility" in passages[0].text


def test_identity_reads_the_file_name_title_and_first_page_codes_and_dates() -> None:
    first = Section(
        text="Location: Tallahassee, FL Accident Number: NYC08CA055\n"
        "Date & Time: 12/08/2007, 1730 EST Registration: N5921D\n"
        "Aircraft: Piper PA-22-150 Aircraft Damage: Substantial\n\n"
        "The pilot, age 85, was attempting to land at his private airstrip. The 1,500-foot strip was wet.",
        page=1,
    )
    later = Section(text="Registration: N999ZZ appears only on page two.", page=2)
    identity = document_identity(ExtractedDocument("2007 incident_report.pdf", "pdf", (first, later)))
    terms = identity.split(" · ")
    assert terms[0] == "2007 incident report"  # the file name's words
    for term in (
        "Tallahassee",
        "FL",
        "NYC08CA055",
        "12/08/2007",
        "December 8, 2007",
        "N5921D",
        "Piper",
        "PA-22-150",
    ):
        assert term in terms
    for noise in ("Location", "Registration", "The", "1,500-foot", "500-foot", "N999ZZ"):
        assert noise not in terms  # labels, sentence starts, measures, later pages


def test_a_word_the_document_writes_in_lower_case_elsewhere_is_a_sentence_start_not_a_name() -> None:
    first = Section(
        text="WHO's next Director-General\n\nHowever the vote goes, Margaret Chan steps down in June 2017. "
        "Recently the World Health Assembly met in Geneva.",
        page=1,
    )
    later = Section(text="The assembly, however, has recently changed its rules.", page=2)
    terms = document_identity(ExtractedDocument("who.pdf", "pdf", (first, later))).split(" · ")
    for name in ("Margaret Chan", "World Health Assembly", "Geneva", "June 2017"):
        assert name in terms
    for start in ("However", "Recently"):
        assert start not in terms


def test_question_terms_are_its_names_codes_and_dates() -> None:
    assert question_terms("How many hours had the pilot of Piper N112ED flown?") == ["Piper", "N112ED"]
    assert question_terms("Which accidents happened on December 8, 2007?") == ["December 8, 2007"]
    assert question_terms("what is the refund policy?") == []


async def test_a_question_across_documents_gets_the_best_passage_of_each(filings) -> None:  # type: ignore[no-untyped-def]
    passages = await filings.search(KB, "Compare the total revenue of each quarter of 2023 for Acme", top_k=4)
    assert len({p.document for p in passages}) == 4  # one passage each, not two of one report


async def test_a_question_naming_one_document_gets_its_passages_only(filings) -> None:  # type: ignore[no-untyped-def]
    passages = await filings.search(KB, "What did Acme Industries say about liquidity in Q2 2023?", top_k=4)
    assert {p.document for p in passages} == {"acme-q2-2023.md"}


def test_periods_are_matched_however_they_are_written() -> None:
    assert name_words("AAPL_10Q_2023Q2.pdf") == "AAPL 10Q 2023 Q2"
    assert name_words("acme-10q-20230630.pdf") == "acme 10q 2023-06-30"
    cover = (Section(text="Acme", page=1),)
    dated = document_identity(ExtractedDocument("acme-10q-20230630.pdf", "pdf", cover))
    assert "June 30, 2023" in dated.split(" · ")  # as a question writes it
    assert question_terms("What was Acme's revenue in the second quarter of 2023?") == [
        "Acme's",
        "second quarter|Q2",
        "2023",
    ]
    identity = document_identity(
        ExtractedDocument("acme.pdf", "pdf", (Section(text="Acme Corp\nReport for Q2 2023", page=1),))
    )
    assert "second quarter" in identity.split(" · ")
