"""A running job's lease: arq's in-progress key, kept short and renewed while the job runs.

arq marks a job as running with a key that expires on its own; a worker that finds the key gone runs
the job. arq sizes that key for the whole job timeout, so a worker that dies (kill -9, OOM, a lost
node) leaves its jobs untouched for minutes. Here the key lives JOB_LEASE_SECONDS and the worker
running the job renews it every third of that, for as long as the job really runs (its threads
included). A dead worker's jobs run again one lease later, and a live worker never loses a job to
another while it still works on it.

The key holds a token of this run, so a renewal never extends another worker's lease. A key found
gone (it lapsed while Redis or this loop stalled, and nobody took the job) is taken back. A key found
holding another run's token means another worker took the job: this run stops and leaves it to that
one, so a job never runs twice at once. Its arq then drops the job from the queue and deletes the key,
which the other run takes back on its next renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

T = TypeVar("T")
RENEWALS_PER_LEASE = 3

# Extend the lease while it is this run's, take it back when it is gone; 0 when another run holds it.
_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if not holder then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class LeaseLost(Exception):
    """Another worker may be running this job now: this run stopped."""


class JobLease:
    def __init__(self, redis: Redis, job_id: str, *, seconds: float) -> None:
        self._redis = redis
        self._key = in_progress_key_prefix + job_id
        self._ms = int(seconds * 1000)
        self._seconds = seconds
        self._token = uuid.uuid4().hex
        self._renew = redis.register_script(_RENEW)
        self.lost = False

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()` under the lease; LeaseLost when the lease was lost, which cancelled the work."""
        await self._take()
        task = asyncio.current_task()
        assert task is not None
        keeper = asyncio.create_task(self._keep(task), name=f"lease-{self._key}")
        try:
            return await work()
        except asyncio.CancelledError:
            # Cancelled by the keeper alone (not by shutdown or arq's deadline): the lease is gone.
            if self.lost and task.uncancel() == 0:
                raise LeaseLost("another worker took it while its lease had lapsed") from None
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _take(self) -> None:
        """arq has just given this worker the job (its key set to b'1'): mark the key as this run's."""
        await self._redis.set(self._key, self._token, px=self._ms)

    async def _keep(self, task: asyncio.Task[object]) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self._seconds / RENEWALS_PER_LEASE)
            try:
                held = bool(await self._renew(keys=[self._key], args=[self._token, self._ms]))
            except RedisError as exc:
                # Redis out of reach for a moment: the key may live on; try again until it cannot.
                held = time.monotonic() - renewed < self._seconds
                log.warning("lease_not_renewed", key=self._key, error=type(exc).__name__, held=held)
            else:
                renewed = time.monotonic() if held else renewed
            if not held:
                log.error("lease_lost", key=self._key)
                self.lost = True
                task.cancel()
                return
