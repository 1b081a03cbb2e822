"""Retrieval latency (embed the question + hybrid search, no LLM): covidqa and a 100k-chunk KB.

Every measured question is new to the engine (its embedding is computed, not cached): covidqa is
asked the first `--questions` of qa.jsonl, the synthetic KB the next `--questions`.

    .venv/bin/python bench/retrieval_latency.py [--chunks 100000] [--questions 200] [--query-runtime torch]

The synthetic knowledge base is built from covidqa's real chunks and vectors: each chunk is copied
with a little noise added to its vector and a distinct tag added to its text, until there are
`--chunks` of them, so the index has the cluster structure of real text rather than random points.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np
from _common import covidqa, machine_note, scratch, summary_ms

from rag.store import new_version
from rag.types import Chunk, DocumentInfo, Upload

SYNTH_KB = "synthetic"
PER_DOC = 1000  # chunks per synthetic document


WARM_UP = "warm-up question, not one of those measured"


async def latencies(engine, kb: str, questions: list[str]) -> list[float]:
    await engine.search(kb, WARM_UP)  # loads the manifest and builds the keyword index
    out = []
    for q in questions:
        started = time.perf_counter()
        await engine.search(kb, q)
        out.append((time.perf_counter() - started) * 1000)
    return out


def build_synthetic(store, texts: list[str], vectors: np.ndarray, total: int) -> float:
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    made = 0
    doc = 0
    while made < total:
        n = min(PER_DOC, total - made)
        pick = rng.integers(0, len(texts), n)
        noisy = vectors[pick] + rng.normal(0, 0.02, (n, vectors.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        chunks = [Chunk(text=f"{texts[i]} [copy {made + j}]", index=j) for j, i in enumerate(pick)]
        version = new_version()
        name = f"synthetic-{doc:04d}.txt"
        store.add_chunks(SYNTH_KB, document=name, version=version, chunks=chunks, embeddings=noisy, url=None)
        store.activate(
            SYNTH_KB,
            DocumentInfo(
                name=name,
                sha256=version,
                version=version,
                chunks=n,
                uploader="bench",
                uploaded_at=time.time(),
                size=0,
                kind="text",
            ),
        )
        made += n
        doc += 1
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--store", default=None, help="re-use this store directory between runs")
    parser.add_argument(
        "--query-runtime", choices=["onnx", "torch"], default="onnx", help="EMBEDDING_QUERY_RUNTIME"
    )
    args = parser.parse_args()
    print(machine_note())
    root = covidqa()
    rows = [json.loads(line) for line in (root / "qa.jsonl").read_text().splitlines()]
    # Each KB is asked questions the engine has not embedded before: a question seen earlier would be
    # answered from the embedding cache and leave the question's embedding out of the figure.
    distinct = list(dict.fromkeys(r["question"] for r in rows))  # qa.jsonl repeats a few questions
    questions = distinct[: args.questions]
    unseen = distinct[args.questions : 2 * args.questions]

    engine, store = scratch(args.store, embedding_query_runtime=args.query_runtime)
    files = sorted((root / "docs").iterdir())
    await engine.ingest_many("covidqa", (Upload(path.name, path.read_bytes()) for path in files))
    covid = await latencies(engine, "covidqa", questions)
    print(f"questions embedded with {engine.embedder.query_runtime}")
    print(f"covidqa ({(await engine.stats('covidqa')).chunks} chunks): {summary_ms(covid)}")

    texts, vectors = store.all_chunks("covidqa")
    have = (await engine.stats(SYNTH_KB)).chunks
    build_s = build_synthetic(store, texts, vectors, args.chunks) if have != args.chunks else 0.0
    started = time.perf_counter()
    await engine.search(SYNTH_KB, WARM_UP)
    index_s = time.perf_counter() - started
    synth = await latencies(engine, SYNTH_KB, unseen)
    print(
        f"synthetic ({args.chunks} chunks; written in {build_s:.0f} s, "
        f"first search with index build {index_s:.1f} s): {summary_ms(synth)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
