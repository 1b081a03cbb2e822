"""The arq side of `threadwise worker`: runs the jobs `threadwise serve` queued (RUNNER=queue).

Everything a job needs is built once at start-up into arq's context (by bot/compose/worker.py): the
engine (Chroma server, model loaded), the platforms' outbound parts (no web service), the thread
memory in Redis, and this worker's metrics (GET /metrics on WORKER_METRICS_PORT). Each job is
`JobHandler.run`, wrapped in what only a queue can do:

- a retry with backoff for a RetryableError (`Retry(defer=…)`), and the apology on the last try;
- a deadline (JOB_TIMEOUT_SECONDS), after which the user is told it took too long; an ingest stops
  between two embedding batches and leaves nothing of that document;
- a lease (bot/infra/lease.py): arq's in-progress key lives JOB_LEASE_SECONDS and is renewed while the job
  runs, so a worker killed mid-job (kill -9, OOM) has its job run again by another worker one lease
  later, and a live worker's job never runs twice at once, however long it takes;
- at most one reply per job: an "answered" mark per job id, set after the reply, makes a re-run of a
  job that already replied a no-op; a re-run of one that had not replied edits the same placeholder.
- SIGTERM: arq stops taking jobs, lets running ones finish for most of WORKER_SHUTDOWN_GRACE_SECONDS,
  then cancels the rest (an ingest stops at its next batch, its document not stored), which puts them
  back in the queue for another worker; the process exits within the grace period.
- with CHROMA_HOST, the passages of ingests killed midway are swept at start-up and every
  SWEEP_INTERVAL_SECONDS (rag.store.LeftoverSweeper).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Retry, Worker, func
from redis.asyncio import Redis

from bot.core.handlers import JobHandler
from bot.core.model import Job, Terms
from bot.infra.jobqueue import JOB_FUNCTION, KEEP_RESULT_S, QUEUE_NAME, dumps, loads
from bot.infra.lease import JobLease, LeaseLost
from bot.settings import Settings
from rag.engine import Engine
from rag.store import LeftoverSweeper

log = structlog.get_logger(__name__)

# arq's own deadline is ours plus this: time for a timed-out job to stop (an ingest at its next
# batch) and tell the user. It no longer delays anything else: a dead worker's job waits for its lease.
REPLY_GRACE_S = 15
STOP_MARGIN_S = 5  # of the SIGTERM grace, kept for cancelled jobs to stop and the worker to close
ANSWERED_TTL_S = 86_400
POLL_DELAY_S = 0.25
HEALTH_CHECK_INTERVAL_S = 30  # arq writes "<queue>:health-check" this often (for `arq --check`-style probes)
CONTEXT_KEY = "threadwise"


class AnsweredMarks:
    """Which jobs have replied: one Redis key per job id, set after the reply, kept for a day."""

    def __init__(self, redis: Redis, *, prefix: str = "threadwise:answered:", ttl: int = ANSWERED_TTL_S):
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl

    async def answered(self, job_id: str) -> bool:
        return bool(await self._redis.exists(self._prefix + job_id))

    async def mark(self, job_id: str) -> None:
        await self._redis.set(self._prefix + job_id, b"1", ex=self._ttl)


@dataclass(frozen=True)
class JobPolicy:
    timeout_s: float
    max_tries: int
    retry_delay_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> JobPolicy:
        return cls(settings.job_timeout_seconds, settings.job_max_tries, settings.job_retry_delay_seconds)

    def backoff(self, job_try: int) -> float:
        return self.retry_delay_s * 2 ** (job_try - 1)


class QueuedJobs:
    """Runs one queued job: a deadline, retries with backoff, and at most one reply per job id."""

    def __init__(
        self,
        *,
        handler: JobHandler,
        platforms: Mapping[str, Terms],
        marks: AnsweredMarks,
        policy: JobPolicy,
    ) -> None:
        self._handler = handler
        self._platforms = platforms  # to read a job's address back in its platform's terms
        self._marks = marks
        self._policy = policy

    async def run(self, payload: dict[str, Any], *, job_try: int) -> str:
        job = Job.from_dict(payload, self._platforms)
        bound = log.bind(job_id=job.id, job_try=job_try, platform=job.platform, kb=job.kb, kind=job.kind)
        if await self._marks.answered(job.id):
            bound.info("job_already_answered")  # its worker died after replying
            return "already answered"
        bound.info("job_started")
        policy = self._policy
        if job_try > policy.max_tries:
            # Only a try that never finished (its worker died, or arq's own deadline) gets here.
            bound.error("job_abandoned", tries=job_try - 1)
            await self._handler.apologise(job)
            await asyncio.shield(self._marks.mark(job.id))
            return "abandoned"
        last = job_try >= policy.max_tries
        try:
            # Before the last try a RetryableError comes back here to be retried; on it, the apology.
            ended = await self._handler.run(job, last_try=last, deadline_s=policy.timeout_s)
        except Exception as exc:
            # A RetryableError from the work, or the reply itself failed (Slack or Teams unreachable).
            if last:
                bound.exception("job_reply_failed")
                return "failed"
            delay = policy.backoff(job_try)
            bound.warning("job_retrying", in_seconds=delay, error=f"{type(exc).__name__}: {exc}"[:200])
            raise Retry(defer=delay) from exc
        await asyncio.shield(self._marks.mark(job.id))
        return ended


async def run_job(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """The arq job function (registered as JOB_FUNCTION): the job, under its lease."""
    resources: WorkerResources = ctx[CONTEXT_KEY]
    lease = JobLease(ctx["redis"], str(ctx["job_id"]), seconds=resources.lease_s)
    try:
        return await lease.run(lambda: resources.jobs.run(payload, job_try=int(ctx["job_try"])))
    except LeaseLost as exc:
        # Another worker runs it now; finishing here (not a retry) leaves the job to that one alone.
        log.error("job_left_to_another_worker", job_id=ctx["job_id"], reason=str(exc))
        return "left to another worker"


@dataclass
class WorkerResources:
    """What a worker's jobs run with, built once at start-up by the composition root."""

    jobs: QueuedJobs
    lease_s: float
    closing: list[Callable[[], Awaitable[None]]]  # at shutdown, in this order


Startup = Callable[[ArqRedis], Awaitable[WorkerResources]]  # given arq's connection pool


async def _sweep_once(sweeper: LeftoverSweeper) -> None:
    try:
        removed = await asyncio.to_thread(sweeper.sweep)
    except Exception as exc:  # the store out of reach for a moment: next time
        log.warning("sweep_failed", error=f"{type(exc).__name__}: {exc}"[:200])
        return
    if removed:
        log.info("swept_unfinished_ingests", versions=removed)


async def _keep_sweeping(sweeper: LeftoverSweeper, every_s: float) -> None:
    """At start-up, then every `every_s` (0: start-up only). Versions first seen at start-up are
    deleted by a later pass: only then is it sure that no ingest in flight wrote them."""
    await _sweep_once(sweeper)
    while every_s:
        await asyncio.sleep(every_s)
        await _sweep_once(sweeper)


def start_sweeping(engine: Engine, settings: Settings) -> asyncio.Task[None] | None:
    """With a Chroma server, sweep what killed ingests left (the embedded store is swept by the one
    process that holds it). An ingest names its version within its job's deadline or never (it
    stops before naming it): twice that deadline is a safe age."""
    if not settings.chroma_host:
        return None
    sweeper = engine.leftover_sweeper(after=2 * settings.job_timeout_seconds)
    return asyncio.create_task(_keep_sweeping(sweeper, settings.sweep_interval_seconds), name="sweep")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _shutdown(ctx: dict[str, Any]) -> None:
    resources: WorkerResources | None = ctx.get(CONTEXT_KEY)
    if resources is None:  # start-up failed midway
        return
    for close in resources.closing:
        await close()
    log.info("worker_stopped")


def arq_worker(
    settings: Settings,
    *,
    startup: Startup,
    queue_name: str = QUEUE_NAME,
    handle_signals: bool = True,
    burst: bool = False,
) -> Worker:
    """The arq Worker for these settings, its jobs run with what `startup` builds. Call from a
    coroutine: arq binds the running loop.

    `burst`: stop once the queue is empty (tests, one-off catch-up runs).
    """
    if not settings.redis_url:
        raise ValueError("a worker needs REDIS_URL")  # Settings refuse RUNNER=queue without it

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx[CONTEXT_KEY] = await startup(ctx["redis"])

    function = func(
        run_job,
        name=JOB_FUNCTION,
        timeout=settings.job_timeout_seconds + REPLY_GRACE_S,
        # One try more than JOB_MAX_TRIES: tries that died with their worker count too, and the
        # spare one tells the user instead of dropping the job in silence.
        max_tries=settings.job_max_tries + 1,
        keep_result=KEEP_RESULT_S,
    )
    worker = Worker(
        functions=[function],
        queue_name=queue_name,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        on_startup=on_startup,
        on_shutdown=_shutdown,
        handle_signals=handle_signals,
        burst=burst,
        job_completion_wait=completion_wait(settings.worker_shutdown_grace_seconds),
        max_jobs=settings.worker_concurrency,
        keep_result=KEEP_RESULT_S,
        poll_delay=POLL_DELAY_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        job_serializer=dumps,
        job_deserializer=loads,
    )
    # arq's in-progress key is a job's lease: short, and renewed by JobLease while the job runs.
    # arq would size it for the whole timeout, which is how long a dead worker's jobs would wait.
    worker.in_progress_timeout_s = settings.job_lease_seconds
    return worker


def completion_wait(grace_s: int) -> int:
    """How long SIGTERM lets running jobs finish before cancelling them: the grace period less the
    time cancelled jobs need to stop, so that the worker is gone within the grace period."""
    return max(grace_s - min(STOP_MARGIN_S, grace_s // 2), 0)


async def run_worker(worker: Worker) -> int:
    """Run until SIGTERM/SIGINT: take no new job, finish or re-queue the running ones, exit 0."""
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # arq's signal handler cancels its main task to stop: that is our normal exit.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    finally:
        await worker.close()
    return 0
