"""A job's lease on the real Redis: arq's in-progress key, short, kept alive while the job runs, taken
back when it lapsed, and given up (the job stopped) when another worker took the job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from bot.infra.lease import JobLease, LeaseLost
from tests.redisdb import REDIS_URL, sync_client

LEASE_S = 0.6


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    sync_client().close()  # a clear error when no Redis answers
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def job_id(redis: Redis) -> AsyncIterator[str]:
    job = f"twtest-lease-{uuid.uuid4().hex[:8]}"
    await redis.set(in_progress_key_prefix + job, b"1", px=int(LEASE_S * 1000))  # as arq starts a job
    yield job
    await redis.delete(in_progress_key_prefix + job)


async def test_a_job_longer_than_its_lease_keeps_it_until_it_ends(redis: Redis, job_id: str) -> None:
    key = in_progress_key_prefix + job_id

    async def work() -> str:
        await asyncio.sleep(LEASE_S * 4)  # four leases: another worker would have taken an unrenewed job
        return "done"

    lease = JobLease(redis, job_id, seconds=LEASE_S)
    watched = asyncio.create_task(lease.run(work))
    for _ in range(7):
        await asyncio.sleep(LEASE_S / 2)
        if not watched.done():
            assert await redis.exists(key), "the lease lapsed while the job ran"
    assert await watched == "done"


async def test_a_lapsed_lease_is_taken_back_while_nobody_took_the_job(redis: Redis, job_id: str) -> None:
    key = in_progress_key_prefix + job_id

    async def work() -> str:
        await redis.delete(key)  # lapsed while Redis or this loop stalled; no other worker came
        await asyncio.sleep(LEASE_S)
        assert await redis.exists(key)
        return "done"

    assert await JobLease(redis, job_id, seconds=LEASE_S).run(work) == "done"


async def test_a_job_another_worker_took_is_stopped_and_left_to_it(redis: Redis, job_id: str) -> None:
    key = in_progress_key_prefix + job_id
    stopped = asyncio.Event()

    async def work() -> str:
        await redis.set(key, b"1", px=int(LEASE_S * 1000))  # lapsed, and another worker's arq took it
        try:
            await asyncio.sleep(LEASE_S * 5)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "ran twice at once"

    with pytest.raises(LeaseLost):
        await asyncio.wait_for(JobLease(redis, job_id, seconds=LEASE_S).run(work), LEASE_S * 3)
    assert stopped.is_set()
    assert await redis.get(key) == b"1"  # the other worker's lease, untouched


async def test_a_cancelled_job_is_cancelled_not_lost(redis: Redis, job_id: str) -> None:
    task = asyncio.create_task(JobLease(redis, job_id, seconds=LEASE_S).run(lambda: asyncio.sleep(10)))
    await asyncio.sleep(0.1)
    task.cancel()  # SIGTERM's grace is over, or arq's deadline
    with pytest.raises(asyncio.CancelledError):
        await task
