"""`threadwise worker`: runs the jobs `threadwise serve` queued (RUNNER=queue) on an arq Worker.

Everything a job needs is built once at start-up into arq's context: the engine (Chroma server, model
loaded), the platforms' reply senders and file fetchers (no web service), the thread memory in Redis,
and this worker's metrics (GET /metrics on WORKER_METRICS_PORT). Each job is `JobHandler.run`, wrapped
in what only a queue can do:

- a retry with backoff for a RetryableError (`Retry(defer=…)`), and the apology on the last try;
- a deadline (JOB_TIMEOUT_SECONDS), after which the user is told it took too long; an ingest stops
  between two embedding batches and leaves nothing of that document;
- a lease (bot/lease.py): arq's in-progress key lives JOB_LEASE_SECONDS and is renewed while the job
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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Retry, Worker, func
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bot.core import text
from bot.core.handlers import JobHandler
from bot.core.model import Job, Reply
from bot.core.ports import FileFetcher, ReplySender
from bot.core.state import ThreadMemory
from bot.jobqueue import JOB_FUNCTION, KEEP_RESULT_S, QUEUE_NAME, QueueRunner, dumps, loads
from bot.lease import JobLease, LeaseLost
from bot.metrics import Metrics
from bot.metrics_port import serve_worker_metrics
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


class Outbound(Protocol):
    """What a worker needs of a platform: its sender and fetcher, opened without a web server."""

    name: str
    sender: ReplySender
    fetcher: FileFetcher

    async def start_outbound(self) -> None: ...

    async def close(self) -> None: ...


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
        retrying: JobHandler,
        final: JobHandler,
        senders: Mapping[str, ReplySender],
        marks: AnsweredMarks,
        policy: JobPolicy,
    ) -> None:
        self._retrying = retrying  # re-raises RetryableError so that arq retries the job
        self._final = final  # the last try: a RetryableError gets the apology
        self._senders = senders
        self._marks = marks
        self._policy = policy

    async def run(self, payload: dict[str, Any], *, job_try: int) -> str:
        job = Job.from_dict(payload)
        bound = log.bind(job_id=job.id, job_try=job_try, platform=job.platform, kb=job.kb, kind=job.kind)
        if await self._marks.answered(job.id):
            bound.info("job_already_answered")  # its worker died after replying
            return "already answered"
        bound.info("job_started")
        policy = self._policy
        if job_try > policy.max_tries:
            # Only a try that never finished (its worker died, or arq's own deadline) gets here.
            bound.error("job_abandoned", tries=job_try - 1)
            return await self._apologise(job, text.INTERNAL_ERROR, "abandoned")
        last = job_try >= policy.max_tries
        try:
            async with asyncio.timeout(policy.timeout_s) as deadline:
                await (self._final if last else self._retrying).run(job)
        except TimeoutError:
            if not deadline.expired():
                raise
            bound.error("job_timed_out", seconds=policy.timeout_s)
            return await self._apologise(job, text.TIMED_OUT, "timed out")
        except Exception as exc:
            # A RetryableError from the work, or the reply itself failed (Slack or Teams unreachable).
            if last:
                bound.exception("job_reply_failed")
                return "failed"
            delay = policy.backoff(job_try)
            bound.warning("job_retrying", in_seconds=delay, error=f"{type(exc).__name__}: {exc}"[:200])
            raise Retry(defer=delay) from exc
        await asyncio.shield(self._marks.mark(job.id))
        return "done"

    async def _apologise(self, job: Job, template: str, outcome: str) -> str:
        reply = Reply(template.format(doing=text.DOING[job.kind], ref=job.id[:12]), kind="error")
        await self._senders[job.platform].finish(job.address, job.handle, reply)
        await asyncio.shield(self._marks.mark(job.id))
        return outcome


async def run_job(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """The arq job function (registered as JOB_FUNCTION): the job, under its lease."""
    resources: _Resources = ctx[CONTEXT_KEY]
    lease = JobLease(ctx["redis"], str(ctx["job_id"]), seconds=resources.lease_s)
    try:
        return await lease.run(lambda: resources.jobs.run(payload, job_try=int(ctx["job_try"])))
    except LeaseLost as exc:
        # Another worker runs it now; finishing here (not a retry) leaves the job to that one alone.
        log.error("job_left_to_another_worker", job_id=ctx["job_id"], reason=str(exc))
        return "left to another worker"


@dataclass
class _Resources:
    jobs: QueuedJobs
    platforms: list[Outbound]
    metrics_server: web.AppRunner | None
    lease_s: float
    sweeping: asyncio.Task[None] | None = None


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
    sweeper = LeftoverSweeper(engine.store, after=2 * settings.job_timeout_seconds)
    return asyncio.create_task(_keep_sweeping(sweeper, settings.sweep_interval_seconds), name="sweep")


def outbound_platforms(settings: Settings) -> list[Outbound]:
    platforms: list[Outbound] = []
    if settings.slack_bot_token:
        from bot.slack.platform import SlackPlatform

        platforms.append(SlackPlatform.from_settings(settings))
    if settings.teams_enabled:
        from bot.teams.platform import TeamsPlatform

        platforms.append(TeamsPlatform.from_settings(settings))
    return platforms


def thread_memory(redis: Redis) -> ThreadMemory:
    from bot.redis_state import RedisThreadMemory

    return RedisThreadMemory(redis)


async def _startup(ctx: dict[str, Any], *, settings: Settings, queue_name: str) -> None:
    from bot.compose import build_engine

    redis: ArqRedis = ctx["redis"]  # arq's pool: the thread memory and the marks share it
    metrics = Metrics(registry=CollectorRegistry())  # this worker's jobs, at WORKER_METRICS_PORT
    engine = await asyncio.to_thread(build_engine, settings, stage_observer=metrics.stage)
    await asyncio.to_thread(engine.embedder.prepare_queries)  # the model, and what questions run on
    metrics.watch_engine(engine)
    metrics.watch_queue(QueueRunner(redis, queue_name=queue_name).depth)
    platforms = outbound_platforms(settings)
    for platform in platforms:
        await platform.start_outbound()
    senders = {p.name: p.sender for p in platforms}
    fetchers = {p.name: p.fetcher for p in platforms}
    memory = thread_memory(redis)

    def handler(*, retry_elsewhere: bool) -> JobHandler:
        return JobHandler(
            engine=engine,
            senders=senders,
            fetchers=fetchers,
            memory=memory,
            max_file_mb=settings.max_file_size_mb,
            retry_elsewhere=retry_elsewhere,
            telemetry=metrics,
        )

    jobs = QueuedJobs(
        retrying=handler(retry_elsewhere=True),
        final=handler(retry_elsewhere=False),
        senders=senders,
        marks=AnsweredMarks(redis),
        policy=JobPolicy.from_settings(settings),
    )
    server = None
    if settings.worker_metrics_port:
        server = await serve_worker_metrics(metrics, host=settings.host, port=settings.worker_metrics_port)
    ctx[CONTEXT_KEY] = _Resources(jobs, platforms, server, settings.job_lease_seconds)
    ctx[CONTEXT_KEY].sweeping = start_sweeping(engine, settings)
    log.info("worker_ready", concurrency=settings.worker_concurrency, platforms=sorted(senders))


async def _shutdown(ctx: dict[str, Any]) -> None:
    resources: _Resources | None = ctx.get(CONTEXT_KEY)
    if resources is None:  # start-up failed midway
        return
    if resources.sweeping is not None:
        resources.sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await resources.sweeping
    for platform in resources.platforms:
        await platform.close()
    if resources.metrics_server is not None:
        await resources.metrics_server.cleanup()
    log.info("worker_stopped")


def build_worker(
    settings: Settings, *, queue_name: str = QUEUE_NAME, handle_signals: bool = True, burst: bool = False
) -> Worker:
    """The arq Worker for these settings. Call from a coroutine: arq binds the running loop.

    `burst`: stop once the queue is empty (tests, one-off catch-up runs).
    """
    if not settings.redis_url:
        raise ValueError("a worker needs REDIS_URL")  # Settings refuse RUNNER=queue without it

    async def startup(ctx: dict[str, Any]) -> None:
        await _startup(ctx, settings=settings, queue_name=queue_name)

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
        on_startup=startup,
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


async def run_worker(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT: take no new job, finish or re-queue the running ones, exit 0."""
    worker = build_worker(settings)
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
