"""Ingestion throughput on covidqa end to end, beside the raw model throughput on the same chunks.

    .venv/bin/python bench/ingest_throughput.py [--docs DIR]

Raw: the model alone encodes exactly the chunks the engine makes, in batches. End to end: a fresh
engine (empty caches, empty store) ingests every file the way `threadwise ingest DIR` does
(Engine.ingest_many) — read, detect, extract, chunk, embed, write to Chroma, activate. The ratio says
how much everything but the model costs (goal: >= 0.85). The raw pass runs before and after the end
to end one and the ratio is taken against their mean, so a machine that speeds up or slows down
during the run does not favour either side.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from _common import covidqa, scratch_engine

from rag import extract
from rag.chunk import chunk_document
from rag.types import IngestResult, Upload


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=Path, default=None)
    args = parser.parse_args()
    docs_dir = args.docs or covidqa() / "docs"
    files = sorted(p for p in docs_dir.iterdir() if p.is_file())

    engine = scratch_engine()
    embedder = engine.embedder
    embedder.load()
    limits = engine.limits
    texts: list[str] = []
    for path in files:
        doc = extract.extract(
            path.name, path.read_bytes(), allowed_types=limits.allowed_types, max_bytes=limits.max_bytes
        )
        texts.extend(c.text for c in chunk_document(doc, embedder, max_tokens=limits.chunk_tokens))
    unique = list(dict.fromkeys(texts))

    def raw() -> float:
        started = time.perf_counter()
        embedder.encode(unique)  # the model alone: no cache, same batch size
        return len(unique) / (time.perf_counter() - started)

    raw_before = raw()
    fresh = scratch_engine()  # empty embedding cache and store
    started = time.perf_counter()
    uploads = (Upload(path.name, path.read_bytes()) for path in files)
    outcomes = await fresh.ingest_many("bench", uploads)
    e2e_s = time.perf_counter() - started
    raw_after = raw()
    chunks = sum(o.chunks for o in outcomes if isinstance(o, IngestResult))
    e2e_rate = chunks / e2e_s
    raw_rate = (raw_before + raw_after) / 2
    print(f"documents={len(files)} chunks={chunks} (unique texts {len(unique)})")
    print(f"raw model:  {raw_rate:.2f} chunks/s (before {raw_before:.2f}, after {raw_after:.2f})")
    print(f"end to end: {e2e_rate:.2f} chunks/s ({e2e_s:.1f} s)")
    print(f"ratio end-to-end / raw = {e2e_rate / raw_rate:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
