"""Building the object graph from Settings: the one place that knows every concrete class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from bot.core.dispatch import Dispatcher
from bot.core.feedback import FeedbackRecorder
from bot.core.handlers import JobHandler
from bot.core.ports import FileFetcher, JobRunner, ReplySender
from bot.core.runner import InProcessRunner
from bot.core.state import (
    Deduplicator,
    MemoryDeduplicator,
    MemoryRateLimiter,
    MemoryThreadMemory,
    MemoryVoteBook,
    RateLimiter,
    ThreadMemory,
    VoteBook,
)
from bot.jobqueue import QueueRunner
from bot.metrics import Metrics
from bot.settings import Settings
from rag.answer import build_answerer
from rag.cache import QueryCache, SemanticCache
from rag.embed import SentenceEmbedder
from rag.engine import Engine, EngineLimits, StageObserver
from rag.errors import ConfigError
from rag.focus import SentenceHighlighter
from rag.redact import redact
from rag.search import SearchOptions
from rag.store import KnowledgeStore, open_client
from rag.types import Answer


def build_engine(settings: Settings, *, stage_observer: StageObserver | None = None) -> Engine:
    client = open_client(
        persist_directory=settings.chroma_persist_directory,
        host=settings.chroma_host,
        port=settings.chroma_port,
    )
    embedder = SentenceEmbedder(
        cache_size=settings.embedding_cache_size,
        cache_ttl=settings.embedding_cache_ttl,
        query_runtime=settings.embedding_query_runtime,
        onnx_dir=settings.embedding_onnx_dir or None,
    )
    return Engine(
        store=KnowledgeStore(
            client, prefix=settings.chroma_collection_name, exclusive=not settings.chroma_host
        ),
        embedder=embedder,
        answerer=build_answerer(
            provider=settings.llm_provider,
            groq_api_key=settings.groq_api_key,
            groq_model=settings.groq_model,
            groq_base_url=settings.groq_base_url,
            timeout_s=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            highlighter=SentenceHighlighter(embedder),
        ),
        limits=EngineLimits(
            max_bytes=settings.max_file_bytes,
            allowed_types=frozenset(settings.allowed_file_types),
            chunk_tokens=settings.chunk_max_tokens,
        ),
        search_options=SearchOptions(
            top_k=settings.search_top_k,
            min_similarity=settings.search_min_similarity,
            hybrid=settings.search_hybrid,
        ),
        query_cache=build_query_cache(settings),
        stage_observer=stage_observer,
    )


def build_query_cache(settings: Settings) -> QueryCache[Answer]:
    """In Redis when REDIS_URL is set (every process shares it), else in this process."""
    if not settings.redis_url:
        return SemanticCache[Answer](
            size=settings.query_cache_size,
            ttl=settings.query_cache_ttl,
            threshold=settings.query_cache_similarity_threshold,
        )
    from rag.redis_cache import RedisQueryCache, decode_answer, encode_answer

    return RedisQueryCache[Answer](
        open_redis(settings.redis_url),  # synchronous: the engine calls its cache from worker threads
        size=settings.query_cache_size,
        ttl=settings.query_cache_ttl,
        threshold=settings.query_cache_similarity_threshold,
        encode=encode_answer,
        decode=decode_answer,
    )


def open_redis(url: str) -> redis.Redis:
    """A synchronous client that has answered a PING: a REDIS_URL that does not answer stops start-up."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        client.ping()
    except (RedisError, ValueError) as exc:  # ValueError: not a redis:// rediss:// unix:// URL
        raise ConfigError(
            f"REDIS_URL={redact(url)!r} is not usable: {type(exc).__name__}: {redact(str(exc))}. "
            "Start Redis there, or correct REDIS_URL (e.g. redis://localhost:6379/0), "
            "or unset it to keep state in this process"
        ) from None
    return client


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

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def build_chat_app(
    settings: Settings,
    engine: Engine,
    *,
    senders: Mapping[str, ReplySender],
    fetchers: Mapping[str, FileFetcher],
    metrics: Metrics | None = None,
) -> ChatApp:
    """`metrics`: the process's metrics, whose `stage` the engine was built with; else a fresh set."""
    metrics = metrics or Metrics(registry=CollectorRegistry())
    dedup, limiter, memory, shared = _chat_state(settings)
    handler = JobHandler(
        engine=engine,
        senders=senders,
        fetchers=fetchers,
        memory=memory,
        max_file_mb=settings.max_file_size_mb,
        telemetry=metrics,
    )
    runner: InProcessRunner | QueueRunner
    if settings.runner == "queue":
        assert shared is not None  # Settings refuse RUNNER=queue without REDIS_URL
        runner = QueueRunner.sharing(shared)  # jobs run on `threadwise worker`s
    else:
        runner = InProcessRunner(handler.run)
    dispatcher = Dispatcher(
        runner=runner,
        senders=senders,
        dedup=dedup,
        limiter=limiter,
        kb_for=settings.kb_for,
        admins=settings.admin_user_ids,
        telemetry=metrics,
    )
    metrics.watch_engine(engine)
    metrics.watch_queue(runner.depth)
    feedback = FeedbackRecorder(kb_for=settings.kb_for, telemetry=metrics, votes=_vote_book(shared))
    return ChatApp(dispatcher, runner, handler, memory, shared, metrics=metrics, feedback=feedback)


def _vote_book(shared: aioredis.Redis | None) -> VoteBook:
    """Feedback votes, one per person per answer: in Redis beside the other shared state, so a click
    replayed to another replica is not counted again."""
    if shared is None:
        return MemoryVoteBook()
    from bot.redis_state import RedisVoteBook

    return RedisVoteBook(shared)


def _chat_state(
    settings: Settings,
) -> tuple[Deduplicator, RateLimiter, ThreadMemory, aioredis.Redis | None]:
    """Dedup, rate limits and thread memory: in Redis when REDIS_URL is set, so every replica
    agrees, else in this process. The three share one connection pool."""
    per_minute, burst = settings.rate_limit_requests_per_minute, settings.rate_limit_burst
    if not settings.redis_url:
        limiter = MemoryRateLimiter(per_minute=per_minute, burst=burst)
        return MemoryDeduplicator(), limiter, MemoryThreadMemory(), None
    from bot.redis_state import RedisDeduplicator, RedisRateLimiter, RedisThreadMemory

    open_redis(settings.redis_url).close()  # fail at start, not at the first message
    shared = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    return (
        RedisDeduplicator(shared),
        RedisRateLimiter(shared, per_minute=per_minute, burst=burst),
        RedisThreadMemory(shared),
        shared,
    )
