"""`threadwise eval QA.jsonl --docs DIR`: retrieval quality on a question set with gold sources.

Each line of QA.jsonl has `question` and the gold document's file name: `sources` (a list, for
questions answered by several documents) or `source`; `answer` is optional. Measured per question,
averaged over the set:

- recall@1 / recall@5: a gold document's passage is first / among the 5 an answer is written from
  (searched, then ordered by their best sentence: `Engine.passages`);
- MRR: 1 / the rank of the first gold passage among the top 5 (0 when none);
- coverage@10: the share of the question's gold documents among the top 10 passages' documents;
- numbers@5: the share of the answer's numbers of 3+ digits (years excluded) found in the text of the
  top 5 passages — whether the passage that holds the figure reaches the model. Only questions whose
  answer has such a number count here.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.commands.base import SubParsers, add, open_engine
from bot.commands.ingest import ingest_paths
from bot.settings import Settings
from rag.engine import Engine
from rag.names import name_key
from rag.scopes import EVERYTHING
from rag.types import Passage

K = 5
COVERAGE_K = 10
# A number as written: digits with optional thousands commas and a decimal part ("2,319", "0.7").
_NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w,]\d)|(?<![\w.,])\d+(?:\.\d+)?(?![\w])")


@dataclass(frozen=True)
class Question:
    text: str
    sources: frozenset[str]
    numbers: frozenset[str]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Question:
        # Named as the documents are: a gold `sub/guide.pdf` is the document `sub_guide.pdf`.
        sources = [name_key(s) for s in row.get("sources") or [row["source"]]]
        return cls(row["question"], frozenset(sources), frozenset(answer_numbers(row.get("answer", ""))))


@dataclass(frozen=True)
class EvalResult:
    mode: str
    questions: int
    recall_at_1: float
    recall_at_5: float
    mrr: float
    coverage_at_10: float
    numbers_at_5: float | None  # None when no answer has a number to look for
    latency_p50_ms: float
    latency_p95_ms: float

    def line(self) -> str:
        numbers = "n/a" if self.numbers_at_5 is None else f"{self.numbers_at_5:.3f}"
        return (
            f"{self.mode:<7} n={self.questions}  "
            f"recall@1={self.recall_at_1:.3f}  recall@5={self.recall_at_5:.3f}  MRR={self.mrr:.3f}  "
            f"coverage@10={self.coverage_at_10:.3f}  numbers@5={numbers}  "
            f"passages p50={self.latency_p50_ms:.1f} ms p95={self.latency_p95_ms:.1f} ms"
        )


def answer_numbers(answer: str) -> set[str]:
    """The numbers of 3+ digits an answer states, thousands commas dropped; years (1900-2099) left out."""
    found = set()
    for match in _NUMBER.finditer(answer):
        number = match.group().replace(",", "")
        digits = number.split(".", 1)[0]
        if len(digits) < 3 or (len(number) == 4 and 1900 <= int(number) <= 2099 and "," not in match.group()):
            continue
        found.add(number)
    return found


def passage_numbers(passages: list[Passage]) -> set[str]:
    return {m.group().replace(",", "") for p in passages for m in _NUMBER.finditer(p.text)}


def load_questions(path: Path, limit: int = 0) -> list[Question]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Question.from_row(row) for row in (rows[:limit] if limit else rows)]


async def evaluate(engine: Engine, kb: str, questions: list[Question], *, hybrid: bool) -> EvalResult:
    found_1 = found_5 = 0
    reciprocal = coverage = numbers = 0.0
    with_numbers = 0
    latencies = []
    for q in questions:
        started = time.perf_counter()
        top = (await engine.passages(kb, q.text, hybrid=hybrid, visibility=EVERYTHING))[:K]
        latencies.append((time.perf_counter() - started) * 1000)
        # The top 5 are what an answer is written from (searched and ordered by sentence); the top
        # 10 are a search of their own.
        wide = await engine.search(kb, q.text, top_k=COVERAGE_K, hybrid=hybrid, visibility=EVERYTHING)
        ranks = [i for i, p in enumerate(top) if p.document in q.sources]
        if ranks:
            found_1 += ranks[0] == 0
            found_5 += 1
            reciprocal += 1.0 / (ranks[0] + 1)
        coverage += len(q.sources & {p.document for p in wide}) / len(q.sources)
        if q.numbers:
            with_numbers += 1
            numbers += len(q.numbers & passage_numbers(top)) / len(q.numbers)
    n = max(1, len(questions))
    latencies.sort()
    return EvalResult(
        mode="hybrid" if hybrid else "vector",
        questions=len(questions),
        recall_at_1=found_1 / n,
        recall_at_5=found_5 / n,
        mrr=reciprocal / n,
        coverage_at_10=coverage / n,
        numbers_at_5=numbers / with_numbers if with_numbers else None,
        latency_p50_ms=statistics.median(latencies) if latencies else 0.0,
        latency_p95_ms=latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0,
    )


def register(sub: SubParsers) -> None:
    parser = add(sub, "eval", run, help="measure retrieval on a QA set (recall@k, MRR)")
    parser.add_argument("qa", metavar="QA.jsonl")
    parser.add_argument("--docs", required=True, help="folder of the documents the questions are about")
    parser.add_argument("--mode", choices=["hybrid", "vector", "both"], default="both")
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--kb", default="eval-scratch", help="scratch knowledge base (re-used if unchanged)")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    engine = await open_engine(settings)
    qa, docs = Path(args.qa), Path(args.docs)
    return await run_eval(engine, qa, docs, kb=args.kb, mode=args.mode, limit=args.limit)


async def run_eval(engine: Engine, qa: Path, docs: Path, *, kb: str, mode: str, limit: int) -> int:
    await ingest_paths(engine, kb, [docs], uploader="eval")
    questions = load_questions(qa, limit)
    modes = [True, False] if mode == "both" else [mode == "hybrid"]
    for hybrid in modes:
        print((await evaluate(engine, kb, questions, hybrid=hybrid)).line())
    return 0
