"""RUNNER=queue, the serve side: jobs go to Redis as arq jobs, for whichever `threadwise worker` is free.

The arq job id is the platform event id, so enqueuing the same event twice is a no-op: arq refuses an
id whose job key (queued, deferred for a retry, or running) or result key (finished, kept for
KEEP_RESULT_S) exists. Jobs travel as JSON (`Job.to_dict`), never pickle: a worker must not execute
whatever bytes someone managed to put in Redis.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from bot.core.model import Job

log = structlog.get_logger(__name__)

QUEUE_NAME = "threadwise:queue"
JOB_FUNCTION = "run_job"  # the one function `threadwise worker` registers
# A finished job's result (a word) is kept this long; until then a redelivered event id is refused.
KEEP_RESULT_S = 3600
DEPTH_SCAN_LIMIT = 1000  # /metrics looks at this many due jobs at most to tell running from waiting


def dumps(value: Any) -> bytes:
    """arq's serializer: JSON. `default=str` turns a failed job's exception into its message."""
    return json.dumps(value, default=str, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    return json.loads(data)


def arq_client(redis: Redis, *, queue_name: str = QUEUE_NAME) -> ArqRedis:
    """An ArqRedis on `redis`'s connection pool (closing it leaves the pool to its owner)."""
    return ArqRedis(
        pool_or_conn=redis.connection_pool,
        job_serializer=dumps,
        job_deserializer=loads,
        default_queue_name=queue_name,
    )


class QueueRunner:
    """The JobRunner of `threadwise serve` with RUNNER=queue: submit = enqueue; workers run the jobs."""

    def __init__(self, redis: ArqRedis, *, queue_name: str = QUEUE_NAME) -> None:
        self._redis = redis
        self._queue = queue_name

    @classmethod
    def sharing(cls, redis: Redis, *, queue_name: str = QUEUE_NAME) -> QueueRunner:
        """On the connection pool of the shared-state client (its owner closes it)."""
        return cls(arq_client(redis, queue_name=queue_name), queue_name=queue_name)

    async def submit(self, job: Job) -> None:
        queued = await self._redis.enqueue_job(
            JOB_FUNCTION, job.to_dict(), _job_id=job.id, _queue_name=self._queue
        )
        if queued is None:
            log.info("job_already_queued", job_id=job.id)
        else:
            log.info("job_queued", job_id=job.id, queue=self._queue)

    async def drain(self) -> None:
        """Nothing runs here: a submitted job is in Redis, and a worker finishes it."""

    async def depth(self) -> dict[str, int]:
        """The shared queue: jobs running on some worker, due and waiting, deferred (retries)."""
        now = timestamp_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self._queue, "-inf", now, start=0, num=DEPTH_SCAN_LIMIT)
            pipe.zcount(self._queue, "-inf", now)
            pipe.zcount(self._queue, f"({now}", "+inf")
            due_ids, due, deferred = await pipe.execute()
        running = 0
        if due_ids:
            keys = [in_progress_key_prefix + i.decode() for i in due_ids]
            running = int(await self._redis.exists(*keys))
        return {"running": running, "pending": int(due) - running, "deferred": int(deferred)}

    async def oldest_waiting_seconds(self) -> float:
        """How long the oldest due job no worker runs yet has waited since it was due (enqueued, or
        its retry's time came); 0 when none waits. Looks at the DEPTH_SCAN_LIMIT oldest due jobs."""
        now = timestamp_ms()
        due = await self._redis.zrangebyscore(
            self._queue, "-inf", now, start=0, num=DEPTH_SCAN_LIMIT, withscores=True
        )
        if not due:
            return 0.0
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, _ in due:
                pipe.exists(in_progress_key_prefix + job_id.decode())
            running = await pipe.execute()
        waiting = [score for (_, score), taken in zip(due, running, strict=True) if not taken]
        return max(0.0, (now - waiting[0]) / 1000) if waiting else 0.0
