"""`threadwise eval`: the figures it prints for a small set made here, whose answers are known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.cli import main
from bot.commands.evaluate import answer_numbers
from rag.embed import SentenceEmbedder

DOCS = {
    "reactor.md": "# Reactor R7\n\nThe R7 reactor core holds 1,284 fuel rods in a steel vessel.\n",
    "bakery.md": "# Bakery\n\nThe bakery on Elm Street sells sourdough bread baked at 230 degrees.\n",
    "garden.md": "# Garden\n\nThe community garden has tomato beds watered by hand every morning.\n",
}


@pytest.fixture
def qa_set(clean_env: pytest.MonkeyPatch, tmp_path: Path, embedder: SentenceEmbedder) -> tuple[Path, Path]:
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(tmp_path / "chroma"))
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, body in DOCS.items():
        (docs / name).write_text(body)
    rows = [
        # one gold document by `source`; its answer's number is in the passage
        {
            "question": "How many fuel rods does the R7 reactor core hold?",
            "source": "reactor.md",
            "answer": "1,284 fuel rods, as of 2021.",
        },
        # several gold documents by `sources`: coverage counts the share found among the top 10
        {
            "question": "Which places grow or bake food?",
            "sources": ["bakery.md", "garden.md"],
            "answer": "The bakery and the garden.",
        },
        # a number the passages do not hold
        {
            "question": "At what temperature is the sourdough baked?",
            "source": "bakery.md",
            "answer": "At 245 degrees.",
        },
    ]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return qa, docs


def test_eval_reports_every_figure_for_single_and_multi_source_questions(
    qa_set: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    qa, docs = qa_set
    assert main(["eval", str(qa), "--docs", str(docs), "--mode", "hybrid"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    figures = dict(re.findall(r"([\w@]+)=([\d.]+)", line))
    assert figures["n"] == "3"
    assert float(figures["recall@1"]) == 1.0  # each question names its document's own words
    assert float(figures["coverage@10"]) == 1.0  # both gold documents of the multi question among 3
    # numbers@5 over the two answers with a 3+ digit number: 1284 found, 245 is nowhere (2021 is a year)
    assert float(figures["numbers@5"]) == pytest.approx(0.5)


def test_answer_numbers_keep_figures_and_drop_years_and_short_numbers() -> None:
    stated = answer_numbers('2,319 hours in 2007 (12/08/2007), 0.7 miles, 17 hours, "1364 hours"')
    assert stated == {"2319", "1364"}
