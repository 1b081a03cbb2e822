"""`threadwise worker`'s resources from Settings, built once when arq has connected to Redis: the
engine (model loaded), the enabled platforms' outbound parts, the job handler, this worker's metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import structlog
from arq.connections import ArqRedis
from arq.worker import Worker
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bot.compose.chat import build_feedback, build_handler
from bot.compose.engine import build_engine
from bot.infra.backup_record import RedisBackupRecord
from bot.infra.jobqueue import QUEUE_NAME, QueueRunner
from bot.infra.metrics import Metrics, QueueDepth
from bot.infra.metrics_port import serve_worker_metrics
from bot.infra.redis_state import RedisChoices, RedisThreadMemory
from bot.infra.worker import (
    AnsweredMarks,
    JobPolicy,
    QueuedJobs,
    WorkerResources,
    arq_worker,
    start_sweeping,
    stop,
)
from bot.platforms import enabled_platforms
from bot.settings import Settings

log = structlog.get_logger(__name__)


def build_worker(
    settings: Settings, *, queue_name: str = QUEUE_NAME, handle_signals: bool = True, burst: bool = False
) -> Worker:
    """The arq Worker of `threadwise worker`. Call from a coroutine: arq binds the running loop."""
    startup = partial(open_worker, settings, queue_name=queue_name)
    return arq_worker(
        settings, startup=startup, queue_name=queue_name, handle_signals=handle_signals, burst=burst
    )


async def open_worker(settings: Settings, redis: ArqRedis, *, queue_name: str) -> WorkerResources:
    """Everything the worker's jobs need; arq's pool holds the thread memory and the answered marks."""
    metrics = Metrics(registry=CollectorRegistry())  # this worker's jobs, at WORKER_METRICS_PORT
    engine = await asyncio.to_thread(
        build_engine, settings, stage_observer=metrics.stage, failure_observer=metrics.stage_failed
    )
    await asyncio.to_thread(engine.embedder.prepare_queries)  # the model, and what questions run on
    metrics.watch_engine(engine)
    queue = QueueRunner(redis, queue_name=queue_name)
    metrics.watch_queue(queue.depth, oldest=queue.oldest_waiting_seconds)
    metrics.watch_backups(RedisBackupRecord(redis).last_success)  # noted by `threadwise backup`
    platforms = [p.outbound(settings) for p in enabled_platforms(settings)]
    for platform in platforms:
        await platform.start()
    outbound = {p.name: p for p in platforms}
    feedback = build_feedback(settings, metrics, redis)  # notes of the answers given here
    handler = build_handler(
        settings,
        engine,
        platforms=outbound,
        memory=RedisThreadMemory(redis),
        metrics=metrics,
        feedback=feedback,
        choices=RedisChoices(redis),
    )
    jobs = QueuedJobs(
        handler=handler,
        platforms=outbound,
        marks=AnsweredMarks(redis),
        policy=JobPolicy.from_settings(settings),
    )
    server = None
    if settings.worker_metrics_port:
        server = await serve_worker_metrics(metrics, host=settings.host, port=settings.worker_metrics_port)
    sweeping = start_sweeping(engine, settings)
    closing: list[Callable[[], Awaitable[None]]] = []
    if sweeping is not None:
        closing.append(partial(stop, sweeping))
    closing.extend(p.close for p in platforms)
    if server is not None:
        closing.append(server.cleanup)
    log.info("worker_ready", concurrency=settings.worker_concurrency, platforms=sorted(outbound))
    return WorkerResources(jobs, settings.job_lease_seconds, closing)


@contextlib.asynccontextmanager
async def queue_depth(settings: Settings) -> AsyncIterator[QueueDepth | None]:
    """The shared job queue's depth (RUNNER=queue), which any process can read; None without one."""
    if settings.runner != "queue" or not settings.redis_url:
        yield None
        return
    async with Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5) as redis:
        yield QueueRunner.sharing(redis).depth
