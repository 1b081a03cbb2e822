"""Prometheus metrics of one threadwise process, on its own registry (never the library's global one).

Counters and histograms are updated as work happens (`Metrics` is the core's `Telemetry`). What is
read from elsewhere — cache counters, queue depth, documents and chunks per knowledge base — is read
when /metrics is scraped: `refresh()` first (async, bounded by a timeout, the knowledge-base sizes at
most every `kb_refresh_seconds`), then `exposition()` renders the registry from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from bot.core.telemetry import STAGES, Outcome
from rag.engine import Engine
from rag.types import KbStats

log = structlog.get_logger(__name__)

QueueDepth = Callable[[], Awaitable[Mapping[str, int]]]  # e.g. {"running": 2, "pending": 7}
# From a few milliseconds (a search) to minutes (embedding a book).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Every metric threadwise exports. Thread-safe: the engine reports stages from worker threads."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        kb_refresh_seconds: float = 10.0,
        source_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._kb_refresh = kb_refresh_seconds
        self._timeout = source_timeout
        self._clock = clock
        self._requests = Counter(
            "threadwise_requests",
            "User messages by platform, job kind and how they ended",
            ["platform", "kind", "outcome"],
            registry=registry,
        )
        self._stages = Histogram(
            "threadwise_stage_seconds",
            "Time spent in each stage of a job",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self._jobs = Histogram(
            "threadwise_job_seconds",
            "Time from a job's start to its reply, by job kind",
            ["kind"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self._rate_limited = Counter(
            "threadwise_rate_limit_hits",
            "Messages refused by the per-user rate limit, by knowledge base",
            ["platform", "kb"],
            registry=registry,
        )
        self._feedback = Counter(
            "threadwise_feedback",
            "👍/👎 votes on answers",
            ["platform", "kb", "vote"],
            registry=registry,
        )
        for stage in STAGES:  # present from the first scrape, so dashboards see zeros, not gaps
            self._stages.labels(stage)
        self._engine: Engine | None = None
        self._queue: QueueDepth | None = None
        self._scraped = _Scraped()
        self._kb_task: asyncio.Future[dict[str, KbStats]] | None = None
        self._kb_read_at = -math.inf
        # Its own thread: the default executor may be full of jobs' work exactly when /metrics matters.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")
        registry.register(self._scraped)

    # -- Telemetry ---------------------------------------------------------------------------------
    def request(self, platform: str, kind: str, outcome: Outcome) -> None:
        self._requests.labels(platform, kind, outcome).inc()

    def stage(self, stage: str, seconds: float) -> None:
        self._stages.labels(stage).observe(seconds)

    def job(self, kind: str, seconds: float) -> None:
        self._jobs.labels(kind).observe(seconds)

    def rate_limited(self, platform: str, kb: str) -> None:
        self._rate_limited.labels(platform, kb).inc()

    def feedback(self, platform: str, kb: str, vote: str) -> None:
        self._feedback.labels(platform, kb, vote).inc()

    # -- what is read at scrape time -----------------------------------------------------------------
    def watch_engine(self, engine: Engine) -> None:
        """Export the engine's cache counters and its knowledge bases' sizes."""
        self._engine = engine
        self._scraped.cache_stats = engine.cache_stats

    def watch_queue(self, depth: QueueDepth) -> None:
        """Export the job queue's depth: the in-process runner's, or the shared queue's in Redis."""
        self._queue = depth

    async def refresh(self) -> None:
        """Read the scrape-time sources; a slow or failing one keeps its last values and reports down."""
        await asyncio.gather(self._refresh_queue(), self._refresh_kbs())

    async def _refresh_queue(self) -> None:
        if self._queue is None:
            return
        try:
            depth = await asyncio.wait_for(self._queue(), self._timeout)
        except Exception as exc:
            self._scraped.up["queue"] = False
            log.warning("metrics_queue_depth_failed", error=f"{type(exc).__name__}: {exc}"[:200])
            return
        self._scraped.queue = dict(depth)
        self._scraped.up["queue"] = True

    async def _refresh_kbs(self) -> None:
        engine = self._engine
        if engine is None or self._clock() - self._kb_read_at < self._kb_refresh:
            return
        if self._kb_task is None:  # one read at a time, however many scrapes wait for it
            self._kb_task = asyncio.get_running_loop().run_in_executor(self._reader, engine.sizes)
        task = self._kb_task
        with contextlib.suppress(Exception):  # the outcome is read from the task below
            await asyncio.wait_for(asyncio.shield(task), self._timeout)
        if not task.done():  # still reading: the next scrape waits for the same read
            self._scraped.up["kb_sizes"] = False
            log.warning("metrics_kb_sizes_slow", waited_s=self._timeout)
            return
        if self._kb_task is task:
            self._kb_task = None
        error = task.exception()
        if error is not None:
            self._scraped.up["kb_sizes"] = False
            log.warning("metrics_kb_sizes_failed", error=f"{type(error).__name__}: {error}"[:200])
            return
        self._scraped.kb_sizes = task.result()
        self._scraped.up["kb_sizes"] = True
        self._kb_read_at = self._clock()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the text format the scraper asked for: (body, content type)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def metrics_handler(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics: Prometheus text (or OpenMetrics, if the scraper asks for it)."""

    async def handle(request: web.Request) -> web.Response:
        await metrics.refresh()  # bounded: slow sources keep their last values
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handle


async def start_metrics_server(metrics: Metrics, *, host: str, port: int) -> web.AppRunner:
    """GET /metrics on its own port, for a process without the web service (`threadwise worker`).

    Returns the started runner: `await runner.cleanup()` stops it.
    """
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics))
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics_serving", host=host, port=port)
    return runner


class _Scraped:
    """A collector over values read at scrape time (see `Metrics.refresh`)."""

    def __init__(self) -> None:
        self.cache_stats: Callable[[], Mapping[str, float]] | None = None
        self.queue: dict[str, int] = {}
        self.kb_sizes: dict[str, KbStats] = {}
        self.up: dict[str, bool] = {}

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families()

    def _families(self) -> list[Metric]:
        queue = GaugeMetricFamily("threadwise_queue_jobs", "Jobs of this runner by state", labels=["state"])
        for state, count in sorted(self.queue.items()):
            queue.add_metric([state], count)
        documents = GaugeMetricFamily(
            "threadwise_kb_documents", "Documents per knowledge base", labels=["kb"]
        )
        chunks = GaugeMetricFamily(
            "threadwise_kb_chunks", "Searchable passages (chunks) per knowledge base", labels=["kb"]
        )
        for kb, size in sorted(self.kb_sizes.items()):
            documents.add_metric([kb], size.documents)
            chunks.add_metric([kb], size.chunks)
        up = GaugeMetricFamily(
            "threadwise_metrics_source_up",
            "1 when the last read of a scrape-time source succeeded, 0 when its values are stale",
            labels=["source"],
        )
        for source, ok in sorted(self.up.items()):
            up.add_metric([source], 1.0 if ok else 0.0)
        return [queue, documents, chunks, up, *self._cache_families()]

    def _cache_families(self) -> list[Metric]:
        lookups = CounterMetricFamily(
            "threadwise_cache_lookups", "Cache lookups by cache and result", labels=["cache", "result"]
        )
        ratio = GaugeMetricFamily(
            "threadwise_cache_hit_ratio", "Hits / lookups since the process started", labels=["cache"]
        )
        stats = self.cache_stats() if self.cache_stats else {}
        for cache, (hits, misses) in sorted(cache_counts(stats).items()):
            lookups.add_metric([cache, "hit"], hits)
            lookups.add_metric([cache, "miss"], misses)
            ratio.add_metric([cache], hits / (hits + misses) if hits + misses else math.nan)
        return [lookups, ratio]


def cache_counts(stats: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """`{"embedding_cache_hits": 3, "embedding_cache_misses": 1, …}` → `{"embedding": (3, 1), …}`."""
    counts: dict[str, tuple[float, float]] = {}
    for key in stats:
        if key.endswith("_cache_hits"):
            cache = key.removesuffix("_cache_hits")
            counts[cache] = (float(stats[key]), float(stats.get(f"{cache}_cache_misses", 0.0)))
    return counts
