"""Retrieval latency (embed the question + hybrid search, no LLM): covidqa and a 100k-chunk KB.

Every measured question is new to the engine (its embedding is computed, not cached): covidqa is
asked the first `--questions` of qa.jsonl, the synthetic KB the next `--questions`.

    .venv/bin/python bench/retrieval_latency.py [--chunks 100000] [--questions 200] [--query-runtime torch]
        [--scopes 1000]

With `--scopes N` the synthetic knowledge base's chunks are spread over N channels (a document of
chunks/N chunks in each), and it is asked twice, with new questions each time: from the operator's
view (no filter) and from one channel each (the store and the keyword index search that
channel's documents only).

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
from _common import covidqa, machine_note, percentile, scratch, summary_ms

from rag.scopes import EVERYTHING, WORKSPACE, Visibility, channel_scope
from rag.store import new_version
from rag.types import Chunk, DocumentInfo, Upload

SYNTH_KB = "synthetic"
PER_DOC = 1000  # chunks per synthetic document


WARM_UP = "warm-up question, not one of those measured"


async def latencies(engine, kb: str, questions: list[str], places=None) -> list[float]:
    """Milliseconds per question; `places`: the visibility each question is asked from."""
    await engine.search(kb, WARM_UP, visibility=EVERYTHING)  # loads the manifest, builds the index
    out = []
    for n, q in enumerate(questions):
        visibility = places[n % len(places)] if places else EVERYTHING
        started = time.perf_counter()
        await engine.search(kb, q, visibility=visibility)
        out.append((time.perf_counter() - started) * 1000)
    return out


def build_synthetic(
    store, texts: list[str], vectors: np.ndarray, total: int, *, kb: str = SYNTH_KB, channels: int = 0
) -> float:
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    made = 0
    doc = 0
    per_doc = -(-total // channels) if channels else PER_DOC
    while made < total:
        n = min(per_doc, total - made)
        scope = channel_scope(f"C{doc:04d}") if channels else WORKSPACE
        pick = rng.integers(0, len(texts), n)
        noisy = vectors[pick] + rng.normal(0, 0.02, (n, vectors.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        chunks = [Chunk(text=f"{texts[i]} [copy {made + j}]", index=j) for j, i in enumerate(pick)]
        version = new_version()
        name = f"synthetic-{doc:04d}.txt"
        store.add_chunks(kb, document=name, version=version, chunks=chunks, embeddings=noisy, url=None)
        store.activate(
            kb,
            DocumentInfo(
                name=name,
                sha256=version,
                version=version,
                chunks=n,
                uploader="bench",
                uploaded_at=time.time(),
                size=0,
                kind="text",
                scope=scope,
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
    parser.add_argument(
        "--scopes", type=int, default=0, metavar="N", help="spread the chunks over N channels"
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
    third = distinct[2 * args.questions : 3 * args.questions]

    engine, store = scratch(args.store, embedding_query_runtime=args.query_runtime)
    files = sorted((root / "docs").iterdir())
    await engine.ingest_many("covidqa", (Upload(path.name, path.read_bytes()) for path in files))
    covid = await latencies(engine, "covidqa", questions)
    print(f"questions embedded with {engine.embedder.query_runtime}")
    print(f"covidqa ({(await engine.stats('covidqa')).chunks} chunks): {summary_ms(covid)}")

    texts, vectors = store.all_chunks("covidqa")
    kb = f"{SYNTH_KB}-{args.scopes}" if args.scopes else SYNTH_KB
    have = (await engine.stats(kb)).chunks
    build_s = 0.0
    if have != args.chunks:
        build_s = build_synthetic(store, texts, vectors, args.chunks, kb=kb, channels=args.scopes)
    started = time.perf_counter()
    await engine.search(kb, WARM_UP, visibility=EVERYTHING)
    index_s = time.perf_counter() - started
    synth = await latencies(engine, kb, unseen)
    where = f" over {args.scopes} channels" if args.scopes else ""
    print(
        f"synthetic ({args.chunks} chunks{where}; written in {build_s:.0f} s, "
        f"first search with index build {index_s:.1f} s): {summary_ms(synth)}"
    )
    if args.scopes:
        rng = np.random.default_rng(11)
        places = [Visibility.of(channel_scope(f"C{c:04d}")) for c in rng.integers(0, args.scopes, len(third))]
        scoped = await latencies(engine, kb, third, places)
        ratio = percentile(scoped, 0.95) / percentile(synth, 0.95)
        print(f"  asked from one channel each (scope filter): {summary_ms(scoped)}; p95 ratio {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
