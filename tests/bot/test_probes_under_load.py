"""/health, /ready and /metrics stay fast when the process is busy: the probes never queue behind the
jobs' work in the default thread pool, and many probes at once cost one round of checks."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from bot.compose import build_chat_app
from bot.core.handlers import JobHandler
from bot.core.model import Job
from bot.core.state import MemoryThreadMemory
from bot.infra.metrics import Metrics, start_metrics_server
from bot.server import build_app
from bot.settings import Settings
from rag.engine import Engine
from tests.bot.doubles import Outlet, Place
from tests.bot.scrape import Scrape
from tests.bot.test_dispatch import VPN_GUIDE, RecordingSender
from tests.conftest import EngineFactory

KB = "slack-T1"


class _SlowPing:
    """The real store, with a heartbeat that takes `delay` and is counted."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner = inner
        self._delay = delay
        self.pings = 0
        self._lock = threading.Lock()

    def ping(self) -> None:
        with self._lock:
            self.pings += 1
        time.sleep(self._delay)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
async def served(
    make_engine: EngineFactory, clean_env: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient, Engine]]:
    engine = make_engine()
    chat = build_chat_app(Settings(), engine, platforms=[])
    client = TestClient(TestServer(build_app(engine=engine, chat=chat, check_timeout=1.0), host="127.0.0.1"))
    await client.start_server()
    yield client, engine
    await client.close()


async def test_probes_answer_while_the_default_thread_pool_is_full(served: tuple[TestClient, Engine]) -> None:
    client, _ = served
    loop = asyncio.get_running_loop()
    threads = min(32, (os.cpu_count() or 1) + 4)  # the default pool's size
    busy = [loop.run_in_executor(None, time.sleep, 1.0) for _ in range(3 * threads)]  # 3 s of queued work

    started = time.perf_counter()
    ready = await client.get("/ready")
    metrics = await client.get("/metrics")
    health = await client.get("/health")
    elapsed = time.perf_counter() - started

    assert (ready.status, metrics.status, health.status) == (200, 200, 200), await ready.text()
    assert 'threadwise_metrics_source_up{source="kb_sizes"} 1.0' in await metrics.text()
    assert elapsed < 1.0
    await asyncio.gather(*busy)


async def test_many_probes_at_once_cost_one_round_of_checks(served: tuple[TestClient, Engine]) -> None:
    client, engine = served
    store = _SlowPing(engine._store, delay=0.3)
    engine._store = store  # type: ignore[assignment]

    responses = await asyncio.gather(*(client.get("/ready") for _ in range(50)))

    assert {r.status for r in responses} == {200}
    assert store.pings == 1


async def test_a_worker_exports_its_jobs_on_its_own_metrics_port(make_engine: EngineFactory) -> None:
    # What `threadwise worker` needs: the engine and handler reporting to a Metrics served without the
    # web service.
    metrics = Metrics(registry=CollectorRegistry())
    engine = make_engine(stage_observer=metrics.stage)
    metrics.watch_engine(engine)
    await engine.ingest(KB, "vpn.md", VPN_GUIDE)
    sender = RecordingSender()
    handler = JobHandler(
        engine=engine,
        platforms={"slack": Outlet("slack", sender)},
        memory=MemoryThreadMemory(),
        max_file_mb=10,
        telemetry=metrics,
    )
    runner = await start_metrics_server(metrics, host="127.0.0.1", port=0)
    try:
        job = Job("Ev1", "ask", "slack", KB, "U1", "How do I rotate the VPN certificate?", "t", Place("C1"))
        await handler.run(job)
        port = runner.addresses[0][1]
        async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            body = await response.text()
    finally:
        await runner.cleanup()

    from prometheus_client.parser import text_string_to_metric_families

    families = list(text_string_to_metric_families(body))
    m = Scrape({f.name: f.type for f in families}, [s for f in families for s in f.samples])
    assert m.value("threadwise_requests_total", platform="slack", kind="ask", outcome="answered") == 1
    assert m.value("threadwise_stage_seconds_count", stage="llm") == 1
    assert m.value("threadwise_kb_documents", kb=KB) == 1
    assert sender.replies[0].kind == "answer"
