"""Backup of a live embedded store: how long writes are held, archive size, restore time.

    .venv/bin/python bench/backup_snapshot.py [--chunks 20000]

The store is synthetic (random unit vectors, 600-character passages, 1000 per document), written
through the store as an ingest would, so its files have the shape of a real one; no model is
loaded. The backup is taken the way `threadwise serve` takes it (rag.backup.snapshot on the engine).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import scratch

from rag.backup import restore_archive, snapshot
from rag.store import new_version
from rag.types import Chunk, DocumentInfo

KB = "synthetic"
PER_DOC = 1000


def build(store, total: int) -> float:
    rng = np.random.default_rng(7)
    words = np.array("the vpn client certificate renews every ninety days from the portal".split())
    started = time.perf_counter()
    for doc, start in enumerate(range(0, total, PER_DOC)):
        n = min(PER_DOC, total - start)
        vectors = rng.normal(size=(n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        chunks = [Chunk(text=" ".join(rng.choice(words, 100)), index=j) for j in range(n)]
        version = new_version()
        name = f"synthetic-{doc:04d}.txt"
        store.add_chunks(KB, document=name, version=version, chunks=chunks, embeddings=vectors, url=None)
        info = DocumentInfo(name, version, version, n, "bench", time.time(), 0, "text")
        store.activate(KB, info)
    return time.perf_counter() - started


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="threadwise-bench-backup-"))
    try:
        source = root / "chroma"
        engine, store = scratch(str(source))
        built = await asyncio.to_thread(build, store, args.chunks)
        print(f"store: {args.chunks} chunks written in {built:.1f} s, {size_of(source) / 1e6:.1f} MB on disk")
        result = await snapshot(engine, source=source, backup_dir=root / "backups", retention_days=30)
        archive = result.backup.path
        print(
            f"backup: writes held {result.held_seconds:.2f} s, whole {result.seconds:.2f} s, "
            f"archive {archive.stat().st_size / 1e6:.1f} MB ({result.backup.files} files)"
        )
        started = time.perf_counter()
        await asyncio.to_thread(restore_archive, archive, root / "restored")
        print(f"restore (check + unpack + swap): {time.perf_counter() - started:.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
