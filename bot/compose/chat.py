"""The chat side from Settings: dispatcher, runner and handler on the platforms' outbound parts, with
dedup, rate limits, thread memory and votes in this process or in Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from bot.compose.engine import open_redis
from bot.core.choices import TICK_S, Choices, ChoiceTimer, MemoryChoices
from bot.core.dispatch import Dispatcher
from bot.core.feedback import FeedbackBook, FeedbackRecorder
from bot.core.handlers import JobHandler
from bot.core.ports import JobRunner, Outbound
from bot.core.runner import InProcessRunner
from bot.core.state import (
    Deduplicator,
    MemoryDeduplicator,
    MemoryRateLimiter,
    MemoryThreadMemory,
    RateLimiter,
    ThreadMemory,
)
from bot.infra.jobqueue import QueueRunner
from bot.infra.metrics import Metrics
from bot.platform import Intake
from bot.settings import Settings
from rag.engine import Engine


@dataclass
class ChatApp:
    """The chat side wired together: dispatcher in front, runner and handler behind."""

    dispatcher: Dispatcher
    runner: JobRunner
    handler: JobHandler
    memory: ThreadMemory
    redis: aioredis.Redis | None = None  # the shared-state connection pool, when REDIS_URL is set
    metrics: Metrics = field(default_factory=lambda: Metrics(registry=CollectorRegistry()))
    feedback: FeedbackRecorder = field(default_factory=FeedbackRecorder)  # 👍/👎 from any platform
    timer: ChoiceTimer | None = None  # applies DEFAULT_UPLOAD_SCOPE to uploads no one chose for

    def intake(self) -> Intake:
        """What a platform's inbound part hands messages and votes to."""
        return Intake(submit=self.dispatcher.handle, feedback=self.feedback.record, drain=self.runner.drain)

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def build_handler(
    settings: Settings,
    engine: Engine,
    *,
    platforms: Mapping[str, Outbound],
    memory: ThreadMemory,
    metrics: Metrics,
    feedback: FeedbackRecorder,
    choices: Choices,
) -> JobHandler:
    """What runs a job, in this process or on a worker."""
    metrics.expect_platforms(platforms)  # their request counters at 0 from the first scrape
    return JobHandler(
        engine=engine,
        platforms=platforms,
        memory=memory,
        max_file_mb=settings.max_file_size_mb,
        choices=choices,
        default_upload_scope=settings.default_upload_scope,
        choice_minutes=settings.upload_choice_minutes,
        telemetry=metrics,
        feedback=feedback,
    )


def build_chat_app(
    settings: Settings,
    engine: Engine,
    *,
    platforms: Sequence[Outbound],
    metrics: Metrics | None = None,
) -> ChatApp:
    """`platforms`: their outbound parts. `metrics`: the process's metrics, whose `stage` the engine
    was built with; else a fresh set."""
    metrics = metrics or Metrics(registry=CollectorRegistry())
    outbound = {p.name: p for p in platforms}
    dedup, limiter, memory, shared = _chat_state(settings)
    feedback = build_feedback(settings, metrics, shared)
    choices = _choices(shared)
    handler = build_handler(
        settings,
        engine,
        platforms=outbound,
        memory=memory,
        metrics=metrics,
        feedback=feedback,
        choices=choices,
    )
    runner: InProcessRunner | QueueRunner
    if settings.runner == "queue":
        assert shared is not None  # Settings refuse RUNNER=queue without REDIS_URL
        runner = QueueRunner.sharing(shared)  # jobs run on `threadwise worker`s
    else:
        runner = InProcessRunner(handler.run)
    dispatcher = Dispatcher(
        runner=runner,
        platforms=outbound,
        dedup=dedup,
        limiter=limiter,
        memory=memory,
        kb_for=settings.kb_for,
        admins=settings.admin_user_ids,
        channel_uploads=settings.channel_uploads == "on",
        telemetry=metrics,
    )
    metrics.watch_engine(engine)
    metrics.watch_queue(runner.depth, oldest=runner.oldest_waiting_seconds)
    # A short wait (a test's, a demo's) is looked at more often than every TICK_S.
    tick = min(TICK_S, max(0.5, settings.upload_choice_minutes * 60 / 4))
    timer = ChoiceTimer(choices=choices, runner=runner, platforms=outbound, tick=tick)
    return ChatApp(
        dispatcher, runner, handler, memory, shared, metrics=metrics, feedback=feedback, timer=timer
    )


def _choices(shared: aioredis.Redis | None) -> Choices:
    """Uploads waiting for a choice of scope: in Redis beside the other shared state (the worker that
    read the file, the replica that takes the click and the one whose timer fires may differ)."""
    if shared is None:
        return MemoryChoices()
    from bot.infra.redis_state import RedisChoices

    return RedisChoices(shared)


def build_feedback(settings: Settings, metrics: Metrics, shared: aioredis.Redis | None) -> FeedbackRecorder:
    """Where votes go, and the notes of answers they are kept with."""
    return FeedbackRecorder(kb_for=settings.kb_for, telemetry=metrics, book=feedback_book(settings, shared))


def feedback_book(settings: Settings, shared: aioredis.Redis | None) -> FeedbackBook:
    """Votes, one per person per answer, and what each answer was: in Redis beside the other shared
    state (a click replayed to another replica is not counted again), else in FEEDBACK_PATH."""
    if shared is None:
        from bot.infra.feedback_sqlite import SqliteFeedbackBook

        return SqliteFeedbackBook(Path(settings.feedback_path))
    from bot.infra.redis_state import RedisFeedbackBook

    return RedisFeedbackBook(shared)


def _chat_state(
    settings: Settings,
) -> tuple[Deduplicator, RateLimiter, ThreadMemory, aioredis.Redis | None]:
    """Dedup, rate limits and thread memory: in Redis when REDIS_URL is set, so every replica
    agrees, else in this process. The three share one connection pool."""
    per_minute, burst = settings.rate_limit_requests_per_minute, settings.rate_limit_burst
    if not settings.redis_url:
        limiter = MemoryRateLimiter(per_minute=per_minute, burst=burst)
        return MemoryDeduplicator(), limiter, MemoryThreadMemory(), None
    from bot.infra.redis_state import RedisDeduplicator, RedisRateLimiter, RedisThreadMemory

    open_redis(settings.redis_url).close()  # fail at start, not at the first message
    shared = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    return (
        RedisDeduplicator(shared),
        RedisRateLimiter(shared, per_minute=per_minute, burst=burst),
        RedisThreadMemory(shared),
        shared,
    )
