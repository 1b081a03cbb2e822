"""`threadwise eval QA.jsonl --docs DIR`: retrieval quality on a question set with gold sources.

Each line of QA.jsonl has `question` and `source` (the gold document's file name). A question
counts as found at k when a passage among the top k retrieved comes from the gold source.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bot.ingest_cli import ingest_paths
from rag.engine import Engine

K = 5


@dataclass(frozen=True)
class EvalResult:
    mode: str
    questions: int
    recall_at_1: float
    recall_at_5: float
    mrr: float
    latency_p50_ms: float
    latency_p95_ms: float

    def line(self) -> str:
        return (
            f"{self.mode:<7} n={self.questions}  "
            f"recall@1={self.recall_at_1:.3f}  recall@5={self.recall_at_5:.3f}  "
            f"MRR={self.mrr:.3f}  search p50={self.latency_p50_ms:.1f} ms p95={self.latency_p95_ms:.1f} ms"
        )


def load_questions(path: Path, limit: int = 0) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


async def evaluate(engine: Engine, kb: str, questions: list[dict[str, str]], *, hybrid: bool) -> EvalResult:
    found_1 = found_5 = 0
    reciprocal = 0.0
    latencies = []
    for row in questions:
        started = time.perf_counter()
        passages = await engine.search(kb, row["question"], top_k=K, hybrid=hybrid)
        latencies.append((time.perf_counter() - started) * 1000)
        ranks = [i for i, p in enumerate(passages) if p.document == row["source"]]
        if ranks:
            found_1 += ranks[0] == 0
            found_5 += 1
            reciprocal += 1.0 / (ranks[0] + 1)
    n = max(1, len(questions))
    latencies.sort()
    return EvalResult(
        mode="hybrid" if hybrid else "vector",
        questions=len(questions),
        recall_at_1=found_1 / n,
        recall_at_5=found_5 / n,
        mrr=reciprocal / n,
        latency_p50_ms=statistics.median(latencies) if latencies else 0.0,
        latency_p95_ms=latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0,
    )


async def run_eval(engine: Engine, qa: Path, docs: Path, *, kb: str, mode: str, limit: int) -> int:
    await ingest_paths(engine, kb, [docs], uploader="eval")
    questions = load_questions(qa, limit)
    modes = [True, False] if mode == "both" else [mode == "hybrid"]
    for hybrid in modes:
        print((await evaluate(engine, kb, questions, hybrid=hybrid)).line())
    return 0
