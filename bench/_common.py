"""Helpers shared by the benchmarks: an engine on a scratch store, the covidqa paths, percentiles."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.compose import build_engine  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from rag.engine import Engine  # noqa: E402

COVIDQA = ROOT.parent / "shared" / "eval" / "covidqa"


def covidqa() -> Path:
    if not COVIDQA.exists():
        sys.exit(f"{COVIDQA} is not here: the benchmark needs ../shared/eval/covidqa")
    return COVIDQA


def scratch_engine(directory: str | None = None, **overrides: object) -> Engine:
    """An engine on an embedded store in `directory` (a new temporary one by default), no LLM."""
    path = directory or tempfile.mkdtemp(prefix="threadwise-bench-")
    settings = load_settings(
        chroma_persist_directory=path, llm_provider="extractive", chroma_host=None, **overrides
    )
    return build_engine(settings)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> str:
    return f"p50={statistics.median(values):.1f} ms  p95={percentile(values, 0.95):.1f} ms  (n={len(values)})"
