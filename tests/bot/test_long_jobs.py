"""Long ingests on real `threadwise worker` processes (RUNNER=queue, real Redis, real `chroma run`, one
`threadwise serve`, the fake Slack in this test's loop): an ingest that outlives JOB_TIMEOUT_SECONDS is
stopped once and told once; SIGTERM during an ingest stops the worker within its grace period, leaves
the knowledge base as it was, and another worker does the job.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import chromadb
import pytest

from rag.chroma import ChromaStore
from tests.bot.slack import payloads
from tests.bot.slack.conftest import VPN_GUIDE
from tests.bot.test_scale_out import KB, job_tries, queue_env, shows, start_serve, start_worker, upload
from tests.fakes.slack_server import FakeSlack
from tests.processes import Processes, ready, until

pytestmark = pytest.mark.slow

TIMED_OUT = "took longer than I allow"  # bot/core/text.py TIMED_OUT, as the user reads it
GRACE_S = 10  # the worker keeps 5 s of it to stop its jobs and close (bot.infra.worker.completion_wait)


def long_document(sections: int) -> bytes:
    """Markdown of about three passages per section, each different: tens of seconds of embedding."""
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda sigma tau upsilon omega".split()
    parts = ["# Operations handbook\n"]
    for i in range(sections):
        sentence = " ".join(words[(i * 7 + j) % len(words)] + str((i * 31 + j) % 997) for j in range(60))
        parts.append(f"\n## Procedure {i}\n\n{sentence}. {sentence[::-1]}.\n")
    return "".join(parts).encode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(
        team_id=payloads.TEAM, bot_user_id=payloads.BOT_USER, bot_id=payloads.BOT_ID
    ) as fake_slack:
        yield fake_slack


def store_of(chroma_port: int) -> ChromaStore:
    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_port, settings=chromadb.Settings(anonymized_telemetry=False)
    )
    return ChromaStore(client, prefix="threadwise")


async def contents(store: ChromaStore) -> tuple[list[str], int]:
    """The knowledge base as a user and the store see it: document names, passages stored."""
    docs = await asyncio.to_thread(store.documents, KB)
    return [d.name for d in docs], await asyncio.to_thread(store.chunk_count, KB)


def final_text(fake: FakeSlack, ts: str) -> str:
    (message,) = fake.thread(payloads.DM, ts)  # one message in the thread: the placeholder, edited
    return str(message["text"])


async def test_an_ingest_longer_than_the_timeout_is_stopped_once_and_told_once(
    tmp_path: Path, fake: FakeSlack
) -> None:
    timeout_s = 5
    with Processes(tmp_path) as procs:
        env, chroma_port = await queue_env(procs, fake, JOB_TIMEOUT_SECONDS=str(timeout_s))
        serve = start_serve(procs, "serve", env)
        await until(lambda: ready(serve.url), 120, serve.proc)
        worker = await start_worker(procs, "worker", env, serve.proc)

        # ~900 passages: far more than 5 s of embedding even on an idle machine (60 sections, ~180
        # passages, were done in 4.7 s on one and the test then had nothing to stop).
        shared = upload(fake, "big.md", long_document(300))
        ts, job_id = shared["event"]["ts"], shared["event_id"]
        assert await serve.send(shared) == 200
        await until(lambda: bool(job_tries(worker, job_id)), 20, worker)
        started = time.monotonic()
        # Stopped between two embedding batches at the deadline, and told so at once, not when the
        # embedding would have ended (a minute on this machine).
        await fake.wait_for(lambda: shows(fake, payloads.DM, ts, TIMED_OUT), timeout_s + 10)
        assert time.monotonic() - started < timeout_s + 10

        await asyncio.sleep(3 * 3)  # three leases: a job whose lease lapsed would have started again
        assert job_tries(worker, job_id) == [1]  # it ran once
        text = final_text(fake, ts)
        assert TIMED_OUT in text and "Added" not in text
        assert await contents(store_of(chroma_port)) == ([], 0)  # nothing of it stored, nor half of it


async def test_sigterm_during_an_ingest_stops_the_worker_in_its_grace_and_another_does_the_job(
    tmp_path: Path, fake: FakeSlack
) -> None:
    with Processes(tmp_path) as procs:
        env, chroma_port = await queue_env(
            procs, fake, JOB_TIMEOUT_SECONDS="600", WORKER_SHUTDOWN_GRACE_SECONDS=str(GRACE_S)
        )
        serve = start_serve(procs, "serve", env)
        await until(lambda: ready(serve.url), 120, serve.proc)
        first = await start_worker(procs, "worker-1", env, serve.proc)

        small = upload(fake, "vpn.md", VPN_GUIDE)
        assert await serve.send(small) == 200
        await fake.wait_for(lambda: shows(fake, payloads.DM, small["event"]["ts"], "Added"), 60)
        store = store_of(chroma_port)
        before = await contents(store)

        # Long enough (~300 passages, ~20 s of embedding on an idle machine) that it cannot end within
        # the few seconds of grace the worker gives a running job after SIGTERM.
        big = upload(fake, "big.md", long_document(100))
        ts, job_id = big["event"]["ts"], big["event_id"]
        assert await serve.send(big) == 200
        # Embedding: the worker reports how many passages it has read (the placeholder names the file too).
        await fake.wait_for(lambda: shows(fake, payloads.DM, ts, " passages)_"), 90)
        assert job_tries(first, job_id) == [1]
        first.signal(signal.SIGTERM)
        stopping = time.monotonic()
        assert await asyncio.to_thread(first.wait, GRACE_S + 3) == 0
        assert time.monotonic() - stopping <= GRACE_S
        assert await contents(store) == before  # as it was before that document: no passage of it

        second = await start_worker(procs, "worker-2", env, serve.proc)
        await fake.wait_for(lambda: shows(fake, payloads.DM, ts, "Added *big.md*"), 300)
        assert job_tries(second, job_id) == [2]  # the same job, run again by the other worker
        assert "Added *big.md*" in final_text(fake, ts)
        names, _ = await contents(store)
        assert names == ["big.md", "vpn.md"]
