"""Two `threadwise worker` processes on one machine (the simple way to use more cores), against a real
Redis and a real `chroma run`: both start although they share WORKER_METRICS_PORT, each serves its
/metrics on its own port, `threadwise check` says what a worker started now would do, and the
passages a killed ingest left in the Chroma server are swept.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rag.chroma import ChromaStore, open_client
from rag.types import Chunk, DocumentInfo
from tests.processes import VENV_BIN, Process, Processes, free_port, http_status, threadwise_env, until

pytestmark = pytest.mark.slow

KB = "local"
DIM = 384


def passages(n: int, seed: int) -> tuple[list[Chunk], np.ndarray]:
    chunks = [Chunk(f"passage {i} of document {seed}", i) for i in range(n)]
    vectors = np.random.default_rng(seed).random((n, DIM), dtype=np.float32)
    return chunks, vectors


def seed_store(store: ChromaStore) -> None:
    """One finished document, and the passages of an ingest killed before it named its version."""
    chunks, vectors = passages(3, 1)
    store.add_chunks(KB, document="kept.md", version="kept0001", chunks=chunks, embeddings=vectors, url=None)
    info = DocumentInfo("kept.md", "0" * 64, "kept0001", 3, "U1", 1.0, 10, "markdown")
    store.activate(KB, info)
    chunks, vectors = passages(4, 2)
    store.add_chunks(KB, document="ghost.md", version="ghost001", chunks=chunks, embeddings=vectors, url=None)


def metrics_port(worker: Process) -> int:
    (event,) = worker.events("metrics_serving")
    return int(event["port"])


async def test_two_workers_on_one_machine_both_run_and_sweep_what_a_killed_ingest_left(
    tmp_path: Path,
) -> None:
    with Processes(tmp_path) as procs:
        redis_url = await procs.redis()
        _, chroma_port = await procs.chroma()
        store = ChromaStore(
            open_client(persist_directory="unused", host="127.0.0.1", port=chroma_port), prefix="threadwise"
        )
        await asyncio.to_thread(seed_store, store)
        assert await asyncio.to_thread(store.chunk_count, KB) == 7

        port = free_port()
        env = {
            "RUNNER": "queue",
            "REDIS_URL": redis_url,
            "CHROMA_HOST": "127.0.0.1",
            "CHROMA_PORT": str(chroma_port),
            "LLM_PROVIDER": "extractive",
            "LOG_FORMAT": "json",
            "HOST": "127.0.0.1",
            "WORKER_METRICS_PORT": str(port),
            "JOB_TIMEOUT_SECONDS": "1",  # an ingest's passages are named or abandoned within 2 s
            "SWEEP_INTERVAL_SECONDS": "2",
        }
        workers = [procs.threadwise(f"worker-{i}", "worker", env=env) for i in (1, 2)]
        await until(lambda: all(w.events("worker_ready") for w in workers), 150, *workers)

        # Both run; the one that found the port taken says so and serves on the next free one.
        ports = sorted(metrics_port(w) for w in workers)
        assert ports[0] == port and ports[1] > port
        (moved,) = [w for w in workers if metrics_port(w) != port]
        (warning,) = moved.events("metrics_port_taken")
        assert (warning["wanted"], warning["port"]) == (port, ports[1])
        for p in ports:
            assert await http_status(f"http://127.0.0.1:{p}/metrics") == 200

        # `threadwise check` on this machine says what a third worker would do.
        check = await asyncio.to_thread(
            subprocess.run,
            [str(VENV_BIN / "threadwise"), "check"],
            cwd=procs.cwd,
            env=threadwise_env(env),
            capture_output=True,
            text=True,
            timeout=240,
        )
        (line,) = [x for x in check.stdout.splitlines() if x.startswith("worker metrics")]
        assert f"port {port} is in use" in line and "next free port" in line, check.stdout
        assert check.returncode == 0, check.stdout

        # The killed ingest's passages are swept; the finished document keeps all of its own.
        await until(lambda: store.chunk_count(KB) == 3, 30, *workers)
        assert [d.name for d in store.documents(KB)] == ["kept.md"]
        assert {c.version for c in store.chunks_of_versions(KB, ["kept0001"])} == {"kept0001"}
        assert any(w.events("swept_unfinished_ingests") for w in workers)
