"""A queued job on a worker: one reply per job id, retries with backoff, a deadline, the last-try apology.

The engine is real (model, embedded Chroma) and the "answered" marks live in the real Redis; the
platform is the recording sender of test_dispatch, the LLM a scripted Answerer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from arq.worker import Retry
from redis.asyncio import Redis

from bot.core import text
from bot.core.handlers import JobHandler
from bot.core.model import Job, Reply
from bot.core.state import MemoryThreadMemory
from bot.infra.worker import AnsweredMarks, JobPolicy, QueuedJobs
from rag.answer import DeltaCallback
from rag.engine import Engine
from rag.errors import RetryableError
from rag.types import Answer, Passage, Turn
from tests.bot.doubles import FakeEmbedder, Outlet, Place, Shown
from tests.bot.test_dispatch import KB, VPN_GUIDE, RecordingAnswerer, RecordingSender
from tests.redisdb import REDIS_URL, delete_prefix, sync_client, unique_prefix

QUESTION = "How do I rotate the VPN certificate?"


class SlowAnswerer:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        await asyncio.sleep(self.seconds)
        return Answer("too late", (), "llm")


class FlakySender(RecordingSender):
    """Fails to deliver the first `failures` final replies, as Slack would when unreachable."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def finish(self, address: dict[str, Any], handle: dict[str, Any], reply: Reply) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Slack unreachable")
        await super().finish(address, handle, reply)


@pytest.fixture
async def marks() -> AsyncIterator[AnsweredMarks]:
    sync_client().close()  # a clear message when no Redis answers
    prefix = unique_prefix()
    redis = Redis.from_url(REDIS_URL)
    yield AnsweredMarks(redis, prefix=prefix)
    await redis.aclose()
    delete_prefix(prefix)


JobsFactory = Callable[..., QueuedJobs]


@pytest.fixture
def make_jobs(marks: AnsweredMarks) -> JobsFactory:
    def factory(
        engine: Engine, sender: RecordingSender, *, timeout: float = 30, max_tries: int = 3
    ) -> QueuedJobs:
        platforms = {"slack": Outlet("slack", sender)}
        handler = JobHandler(engine=engine, platforms=platforms, memory=MemoryThreadMemory(), max_file_mb=10)
        return QueuedJobs(
            handler=handler,
            platforms=platforms,
            marks=marks,
            policy=JobPolicy(timeout_s=timeout, max_tries=max_tries, retry_delay_s=2.0),
        )

    return factory


def ask_job(job_id: str = "Ev0123456789ABCDEF") -> dict[str, Any]:
    job = Job(
        id=job_id,
        kind="ask",
        platform="slack",
        kb=KB,
        user="U1",
        text=QUESTION,
        thread="C1:1000.1",
        address=Place("C1", "1000.1"),
        handle=Shown("working-1"),
    )
    return job.to_dict()


async def test_a_job_run_again_after_it_replied_does_not_reply_twice(
    make_engine: Callable[..., Engine], make_jobs: JobsFactory
) -> None:
    # e.g. its worker was killed after replying but before arq recorded the job as finished.
    engine = make_engine(answerer=RecordingAnswerer(), embedder=FakeEmbedder())
    await engine.ingest(KB, "vpn.md", VPN_GUIDE)
    sender = RecordingSender()
    jobs = make_jobs(engine, sender)

    assert await jobs.run(ask_job(), job_try=1) == "done"
    assert await jobs.run(ask_job(), job_try=2) == "already answered"

    (finish,) = sender.of("finish")
    assert finish.text.startswith("Answer 1")
    assert finish.handle == Shown("working-1")  # the placeholder the serve showed is replaced


async def test_a_retryable_failure_is_retried_with_growing_delays_then_apologised(
    make_engine: Callable[..., Engine], make_jobs: JobsFactory
) -> None:
    answerer = RecordingAnswerer(fail=RetryableError("Groq 503"))
    engine = make_engine(answerer=answerer, embedder=FakeEmbedder())
    await engine.ingest(KB, "vpn.md", VPN_GUIDE)
    sender = RecordingSender()
    jobs = make_jobs(engine, sender, max_tries=3)

    with pytest.raises(Retry) as first:
        await jobs.run(ask_job(), job_try=1)
    with pytest.raises(Retry) as second:
        await jobs.run(ask_job(), job_try=2)
    assert (first.value.defer_score, second.value.defer_score) == (2000, 4000)
    assert sender.calls == []  # nothing shown while a retry is pending: the placeholder stays

    assert await jobs.run(ask_job(), job_try=3) == "done"
    (finish,) = sender.of("finish")
    assert finish.text == text.INTERNAL_ERROR.format(doing="answering", ref="Ev0123456789")
    assert len(answerer.questions) == 3


async def test_a_job_past_its_deadline_is_stopped_and_the_user_told(
    make_engine: Callable[..., Engine], make_jobs: JobsFactory
) -> None:
    engine = make_engine(answerer=SlowAnswerer(seconds=30), embedder=FakeEmbedder())
    await engine.ingest(KB, "vpn.md", VPN_GUIDE)
    sender = RecordingSender()
    jobs = make_jobs(engine, sender, timeout=0.5)

    started = asyncio.get_running_loop().time()
    assert await jobs.run(ask_job(), job_try=1) == "timed out"

    assert asyncio.get_running_loop().time() - started < 5
    (finish,) = sender.of("finish")
    assert finish.text == text.TIMED_OUT.format(doing="answering", ref="Ev0123456789")
    assert finish.handle == Shown("working-1")
    assert await jobs.run(ask_job(), job_try=2) == "already answered"


async def test_a_try_beyond_the_limit_only_apologises(
    make_engine: Callable[..., Engine], make_jobs: JobsFactory
) -> None:
    # Tries whose worker died count too: the spare try tells the user instead of running again.
    answerer = RecordingAnswerer()
    sender = RecordingSender()
    jobs = make_jobs(make_engine(answerer=answerer, embedder=FakeEmbedder()), sender, max_tries=3)

    assert await jobs.run(ask_job(), job_try=4) == "abandoned"

    assert answerer.questions == []
    (finish,) = sender.of("finish")
    assert finish.text == text.INTERNAL_ERROR.format(doing="answering", ref="Ev0123456789")


async def test_a_reply_that_could_not_be_delivered_is_retried(
    make_engine: Callable[..., Engine], make_jobs: JobsFactory
) -> None:
    engine = make_engine(answerer=RecordingAnswerer(), embedder=FakeEmbedder())
    await engine.ingest(KB, "vpn.md", VPN_GUIDE)
    sender = FlakySender(failures=1)
    jobs = make_jobs(engine, sender)

    with pytest.raises(Retry):
        await jobs.run(ask_job(), job_try=1)
    assert await jobs.run(ask_job(), job_try=2) == "done"

    (finish,) = sender.of("finish")
    assert finish.reply is not None and finish.reply.kind == "answer"
