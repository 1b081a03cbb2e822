"""Prometheus metrics of one threadwise process, on its own registry (never the library's global one).

Counters and histograms are updated as work happens (`Metrics` is the core's `Telemetry`). What is
read from elsewhere — cache counters, queue depth and the oldest waiting job's age, documents and chunks
per knowledge base — is read when /metrics is scraped: `refresh()` first (async, bounded by a timeout,
the knowledge-base sizes at most every `kb_refresh_seconds`), then `exposition()` renders the registry
from memory. The process's own figures (resident memory, CPU, start time: prometheus_client's
ProcessCollector) and the memory limit of its container (cgroup) are read at each scrape too.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import get_args

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from bot.core.model import JobKind
from bot.core.telemetry import OUTCOMES, STAGES, Outcome
from bot.infra.memlimit import memory_limit_bytes
from rag.engine import Engine
from rag.types import KbStats

log = structlog.get_logger(__name__)

QueueDepth = Callable[[], Awaitable[Mapping[str, int]]]  # e.g. {"running": 2, "pending": 7}
QueueAge = Callable[[], Awaitable[float]]  # seconds the oldest waiting job has waited (0: none waits)
Readiness = Callable[[], Awaitable[Mapping[str, str]]]  # the failing /ready checks → why
LastBackup = Callable[[], Awaitable[float | None]]  # Unix time of the newest backup; None: none yet
# Stages whose failures are counted: the model (embed), the store (store, search), the LLM (llm: Groq
# failed and the answer was written extractively), parsing (extract). A refusal is no failure.
FAILING_STAGES = ("extract", "embed", "store", "search", "llm")
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
        self._stage_errors = Counter(
            "threadwise_stage_errors",
            "Failures of a job's stage: the embedding model, the store, the LLM (answered extractively)",
            ["stage"],
            registry=registry,
        )
        for stage in STAGES:  # present from the first scrape, so dashboards see zeros, not gaps
            self._stages.labels(stage)
        for stage in FAILING_STAGES:
            self._stage_errors.labels(stage)
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, process_start_time_seconds…
        self._engine: Engine | None = None
        self._queue: QueueDepth | None = None
        self._queue_age: QueueAge | None = None
        self._last_backup: LastBackup | None = None
        self._ready: Readiness | None = None
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

    def stage_failed(self, stage: str) -> None:
        """A stage raised (or, for `llm`, the model failed and the answer was extractive)."""
        self._stage_errors.labels(stage).inc()

    def expect_platforms(self, platforms: Iterable[str]) -> None:
        """Create each platform's request counters and job timings at 0, so that rates and ratios
        (the alert rules' error rates) have series from the first scrape instead of none."""
        for kind in get_args(JobKind):
            self._jobs.labels(kind)
            for platform in platforms:
                for outcome in OUTCOMES:
                    self._requests.labels(platform, kind, outcome)

    # -- what is read at scrape time -----------------------------------------------------------------
    def watch_engine(self, engine: Engine) -> None:
        """Export the engine's cache counters and its knowledge bases' sizes."""
        self._engine = engine
        self._scraped.cache_stats = engine.cache_stats

    def watch_queue(self, depth: QueueDepth, *, oldest: QueueAge | None = None) -> None:
        """Export the job queue's depth, and with `oldest` how long its oldest waiting job has waited:
        the in-process runner's, or the shared queue's in Redis."""
        self._queue = depth
        self._queue_age = oldest

    def watch_readiness(self, failures: Readiness, checks: Iterable[str]) -> None:
        """Export what /ready answers, check by check (serve: its probe, shared with /ready)."""
        self._ready = failures
        self._scraped.ready = dict.fromkeys(checks, False)

    def watch_backups(self, last: LastBackup) -> None:
        """Export when the newest backup was taken: serve's own scheduler's (embedded store), or what
        `threadwise backup` noted in Redis (a Chroma server)."""
        self._last_backup = last

    async def refresh(self) -> None:
        """Read the scrape-time sources; a slow or failing one keeps its last values and reports down."""
        await asyncio.gather(
            self._refresh_queue(), self._refresh_kbs(), self._refresh_backup(), self._refresh_ready()
        )

    async def _refresh_ready(self) -> None:
        if self._ready is None:
            return
        try:  # each check is bounded by HEALTH_CHECK_TIMEOUT; this only guards the whole round
            failing = await asyncio.wait_for(self._ready(), self._timeout + 1)
        except Exception:
            failing = dict.fromkeys(self._scraped.ready, "no answer")
        self._scraped.ready = {check: check not in failing for check in self._scraped.ready}

    async def _refresh_backup(self) -> None:
        if self._last_backup is None:
            return
        try:
            last = await asyncio.wait_for(self._last_backup(), self._timeout)
        except Exception as exc:
            self._scraped.up["backups"] = False
            log.warning("metrics_last_backup_failed", error=f"{type(exc).__name__}: {exc}"[:200])
            return
        self._scraped.last_backup = last or 0.0
        self._scraped.up["backups"] = True

    async def _refresh_queue(self) -> None:
        if self._queue is None:
            return
        age = self._queue_age
        try:
            async with asyncio.timeout(self._timeout):
                depth, oldest = await asyncio.gather(self._queue(), age() if age else _nothing())
        except Exception as exc:
            self._scraped.up["queue"] = False
            log.warning("metrics_queue_depth_failed", error=f"{type(exc).__name__}: {exc}"[:200])
            return
        self._scraped.queue = dict(depth)
        self._scraped.oldest = oldest
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


async def _nothing() -> None:
    return None


class _Scraped:
    """A collector over values read at scrape time (see `Metrics.refresh`)."""

    def __init__(self) -> None:
        self.cache_stats: Callable[[], Mapping[str, float]] | None = None
        self.last_backup: float | None = None
        self.queue: dict[str, int] = {}
        self.oldest: float | None = None
        self.ready: dict[str, bool] = {}
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
        return [queue, *self._process_families(), documents, chunks, up, *self._cache_families()]

    def _process_families(self) -> list[Metric]:
        """The oldest waiting job, the newest backup, the container's memory limit: each when known."""
        found: list[Metric] = []
        if self.oldest is not None:
            found.append(
                GaugeMetricFamily(
                    "threadwise_queue_oldest_job_seconds",
                    "Seconds the oldest job waiting for a slot (or a worker) has waited; 0: none waits",
                    value=self.oldest,
                )
            )
        if self.last_backup is not None:
            found.append(
                GaugeMetricFamily(
                    "threadwise_backup_last_success_timestamp_seconds",
                    "Unix time of the newest successful backup; 0: none yet",
                    value=self.last_backup,
                )
            )
        if self.ready:
            ready = GaugeMetricFamily(
                "threadwise_ready_check_up",
                "1 when this /ready check passes, 0 when it fails (/ready answers 503)",
                labels=["check"],
            )
            for check, ok in sorted(self.ready.items()):
                ready.add_metric([check], 1.0 if ok else 0.0)
            found.append(ready)
        found.append(
            GaugeMetricFamily(
                "threadwise_memory_limit_bytes",
                "Memory limit of this process's container (cgroup); +Inf: none",
                value=memory_limit_bytes(),
            )
        )
        return found

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
