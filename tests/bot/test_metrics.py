"""GET /metrics after real work: Dispatcher → InProcessRunner → JobHandler → Engine (real model, real
Chroma), composed by build_chat_app and served by build_app; the platform is a recording sender.

What a Prometheus scrape would see is read with prometheus_client's own parser (tests/bot/scrape.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from bot.compose import ChatApp, build_chat_app
from bot.core.feedback import FeedbackVote
from bot.core.model import FileRef, Incoming
from bot.infra.metrics import Metrics
from bot.server import build_app
from bot.settings import Settings
from rag.answer import Answerer
from rag.chroma import ChromaStore
from rag.engine import Engine
from tests.bot.doubles import Outlet, Place
from tests.bot.scrape import Scrape, scrape
from tests.bot.test_dispatch import HOLIDAYS, VPN_GUIDE, RecordingAnswerer, RecordingSender
from tests.conftest import EngineFactory

KB = "slack-T1"
QUESTION = "How do I rotate the VPN certificate?"


@dataclass
class Service:
    engine: Engine
    chat: ChatApp
    sender: RecordingSender
    http: TestClient
    tmp: Path

    async def say(
        self,
        message: str = "",
        *,
        event_id: str | None = None,
        direct: bool = False,
        files: Sequence[FileRef] = (),
        thread: str = "C1:1000.1",
    ) -> None:
        incoming = Incoming(
            platform="slack",
            workspace=KB,
            user="U1",
            text=message,
            event_id=event_id or f"Ev{uuid.uuid4().hex}",
            is_direct=direct,
            thread=thread,
            address=Place("D1" if direct else "C1", thread),
            files=tuple(files),
        )
        await self.chat.dispatcher.handle(incoming)
        await self.chat.runner.drain()

    def file(self, name: str, data: bytes) -> FileRef:
        path = self.tmp / "uploads" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return FileRef(name=name, size=len(data), url=str(path))

    async def metrics(self) -> Scrape:
        return await scrape(self.http)


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def make_service(
    make_engine: EngineFactory, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[ServiceFactory]:
    clients: list[TestClient] = []

    async def factory(
        *,
        answerer: Answerer | None = None,
        per_minute: int = 600,
        burst: int = 100,
        store: Any = None,
        **metrics_options: Any,
    ) -> Service:
        metrics = Metrics(registry=CollectorRegistry(), **metrics_options)
        engine = make_engine(answerer=answerer, stage_observer=metrics.stage, store=store)
        sender = RecordingSender()
        settings = Settings(rate_limit_requests_per_minute=per_minute, rate_limit_burst=burst)
        chat = build_chat_app(
            settings,
            engine,
            platforms=[Outlet("slack", sender)],
            metrics=metrics,
        )
        http = TestClient(TestServer(build_app(engine=engine, chat=chat), host="127.0.0.1"))
        await http.start_server()
        clients.append(http)
        return Service(engine, chat, sender, http, tmp_path)

    yield factory
    for client in clients:
        await client.close()


async def test_an_upload_questions_and_a_vote_show_in_every_family(make_service: ServiceFactory) -> None:
    svc = await make_service(answerer=RecordingAnswerer())

    await svc.say(direct=True, files=[svc.file("vpn.md", VPN_GUIDE), svc.file("holidays.md", HOLIDAYS)])
    await svc.say(QUESTION, event_id="Ev1")
    await svc.say(QUESTION, event_id="Ev1")  # Slack redelivers: dropped
    await svc.say(QUESTION, event_id="Ev2", thread="C1:2000.1")  # asked again: the query cache answers
    await svc.chat.feedback.record(FeedbackVote("slack", KB, "U1", "up", ref="Ev1"))
    m = await svc.metrics()

    assert [r.kind for r in svc.sender.replies] == ["info", "answer", "answer"]
    assert m.families["threadwise_requests"] == "counter"
    assert m.value("threadwise_requests_total", platform="slack", kind="ingest", outcome="answered") == 1
    assert m.value("threadwise_requests_total", platform="slack", kind="ask", outcome="answered") == 2
    assert m.value("threadwise_requests_total", platform="slack", kind="ask", outcome="duplicate") == 1
    assert m.value("threadwise_job_seconds_count", kind="ask") == 2

    # Stages: two files fetched, parsed, embedded and stored; one search and one LLM call (the second
    # question was a cache hit, which still embeds the question); three replies.
    assert m.families["threadwise_stage_seconds"] == "histogram"
    counts = {
        s: m.value("threadwise_stage_seconds_count", stage=s)
        for s in m.labels("threadwise_stage_seconds_count", "stage")
    }
    assert counts == {"download": 2, "extract": 2, "embed": 4, "store": 2, "search": 1, "llm": 1, "reply": 3}
    assert all(m.value("threadwise_stage_seconds_sum", stage=s) > 0 for s in counts)

    docs = await svc.engine.documents(KB)
    assert m.value("threadwise_kb_documents", kb=KB) == len(docs) == 2
    assert m.value("threadwise_kb_chunks", kb=KB) == sum(d.chunks for d in docs) > 0

    assert m.value("threadwise_feedback_total", platform="slack", kb=KB, vote="up") == 1
    assert m.value("threadwise_queue_jobs", state="running") == 0
    assert m.value("threadwise_queue_jobs", state="pending") == 0

    assert m.value("threadwise_cache_lookups_total", cache="query", result="hit") == 1
    assert m.value("threadwise_cache_lookups_total", cache="query", result="miss") == 1
    assert m.value("threadwise_cache_hit_ratio", cache="query") == 0.5
    hits = m.value("threadwise_cache_lookups_total", cache="embedding", result="hit")
    misses = m.value("threadwise_cache_lookups_total", cache="embedding", result="miss")
    assert hits is not None and misses is not None and hits + misses > 0
    assert m.value("threadwise_cache_hit_ratio", cache="embedding") == pytest.approx(hits / (hits + misses))
    assert m.value("threadwise_metrics_source_up", source="kb_sizes") == 1


async def test_refusals_errors_and_rate_limits_are_counted_apart(make_service: ServiceFactory) -> None:
    svc = await make_service(answerer=RecordingAnswerer(fail=RuntimeError("boom")), per_minute=1, burst=1)
    await svc.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    await svc.say(files=[svc.file("vpn.md", VPN_GUIDE)])  # a file in a channel: refused
    await svc.say(QUESTION)  # the answerer breaks: the user gets an apology
    await svc.say("And where is the IT portal?")  # over the limit of one a minute
    m = await svc.metrics()

    assert m.value("threadwise_requests_total", kind="ingest", outcome="refused") == 1
    assert m.value("threadwise_requests_total", kind="ask", outcome="error") == 1
    assert m.value("threadwise_requests_total", kind="ask", outcome="rate_limited") == 1
    assert m.value("threadwise_requests_total", kind="ask", outcome="answered") == 0  # there from the start
    assert m.value("threadwise_rate_limit_hits_total", platform="slack", kb=KB) == 1
    assert m.value("threadwise_stage_seconds_count", stage="llm") == 1  # the failed call is timed too


async def test_a_new_document_shows_after_the_refresh_interval_and_not_before(
    make_service: ServiceFactory,
) -> None:
    now = [1000.0]
    svc = await make_service(kb_refresh_seconds=10, clock=lambda: now[0])
    before = await svc.metrics()
    await svc.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    now[0] += 9.9
    cached = await svc.metrics()
    now[0] += 0.2
    fresh = await svc.metrics()

    assert before.value("threadwise_kb_documents", kb=KB) is None
    assert cached.value("threadwise_kb_documents", kb=KB) is None  # within the interval: no store read
    assert fresh.value("threadwise_kb_documents", kb=KB) == 1


class _CountingStore:
    """The real store, counting the manifest reads /metrics makes; optionally slow to list."""

    def __init__(self, inner: ChromaStore, *, delay: float = 0.0) -> None:
        self._inner = inner
        self._delay = delay
        self.listings = 0
        self._lock = threading.Lock()

    def knowledge_bases(self) -> list[str]:
        with self._lock:
            self.listings += 1
        time.sleep(self._delay)
        return self._inner.knowledge_bases()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_concurrent_scrapes_share_one_store_read(
    make_service: ServiceFactory, store: ChromaStore
) -> None:
    counting = _CountingStore(store, delay=0.2)
    svc = await make_service(store=counting, kb_refresh_seconds=60, source_timeout=30)
    await svc.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    for _ in range(100):  # start-up warms every knowledge base's index, which lists them too
        if svc.engine.warmed:
            break
        await asyncio.sleep(0.05)
    counting.listings = 0

    scrapes = await asyncio.gather(*(svc.metrics() for _ in range(30)))

    assert counting.listings == 1
    assert {s.value("threadwise_kb_documents", kb=KB) for s in scrapes} == {1}


async def test_a_store_that_hangs_does_not_hang_metrics(
    make_service: ServiceFactory, store: ChromaStore
) -> None:
    counting = _CountingStore(store, delay=1.0)
    svc = await make_service(store=counting, source_timeout=0.2)

    started = time.perf_counter()
    m = await svc.metrics()
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert m.value("threadwise_metrics_source_up", source="kb_sizes") == 0
    requests = [x.value for x in m.samples if x.name == "threadwise_requests_total"]
    assert requests and not any(requests)  # the rest is there, just no requests yet
    assert "threadwise_stage_seconds" in m.families
    assert (await svc.http.get("/health")).status == 200
