"""Composition: REDIS_URL decides where shared state lives; a Redis that does not answer stops start-up."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from bot.cli import main
from bot.compose import build_chat_app, build_query_cache
from bot.core.feedback import FeedbackVote
from bot.core.model import Incoming
from bot.core.state import MemoryDeduplicator, MemoryRateLimiter, MemoryThreadMemory
from bot.infra.redis_state import RedisDeduplicator, RedisRateLimiter, RedisThreadMemory
from bot.server import build_app
from bot.settings import load_settings
from rag.cache import SemanticCache
from rag.engine import Engine
from rag.errors import ConfigError
from rag.redis_cache import RedisQueryCache
from rag.types import Turn
from tests.bot.doubles import Outlet, Place
from tests.bot.test_dispatch import RecordingSender
from tests.processes import free_port
from tests.redisdb import REDIS_URL, delete_prefix

DOWN = "redis://:s3cret-pw@127.0.0.1:1/0"  # nothing listens on port 1


def test_without_redis_url_state_and_cache_live_in_the_process(make_engine: Callable[..., Engine]) -> None:
    settings = load_settings(redis_url=None)
    chat = build_chat_app(settings, make_engine(), platforms=[])
    assert isinstance(chat.dispatcher._dedup, MemoryDeduplicator)
    assert isinstance(chat.dispatcher._limiter, MemoryRateLimiter)
    assert isinstance(chat.memory, MemoryThreadMemory) and chat.redis is None
    assert isinstance(build_query_cache(settings), SemanticCache)


async def test_with_redis_url_two_chat_apps_share_dedup_limits_and_thread_memory(
    make_engine: Callable[..., Engine],
) -> None:
    settings = load_settings(redis_url=REDIS_URL, rate_limit_requests_per_minute=1, rate_limit_burst=1)
    engine = make_engine()
    senders = [RecordingSender(), RecordingSender()]
    apps = [build_chat_app(settings, engine, platforms=[Outlet("slack", s)]) for s in senders]
    run = uuid.uuid4().hex
    try:
        assert isinstance(apps[0].dispatcher._dedup, RedisDeduplicator)
        assert isinstance(apps[0].dispatcher._limiter, RedisRateLimiter)
        assert isinstance(apps[0].memory, RedisThreadMemory)
        assert isinstance(build_query_cache(settings), RedisQueryCache)

        def message(event: str) -> Incoming:
            return Incoming(
                platform="slack",
                workspace=f"slack-{run}",
                user="U1",
                text="help",  # a command: runs no engine work
                event_id=f"{run}-{event}",
                is_direct=True,
                thread=f"slack:{run}",
                address=Place("D1"),
            )

        assert await apps[0].dispatcher.handle(message("a")) is not None
        assert await apps[1].dispatcher.handle(message("a")) is None  # the other replica saw it
        await apps[0].runner.drain()
        await apps[0].memory.append(f"slack:{run}", Turn("user", "hello"))
        assert await apps[1].memory.known(f"slack:{run}")
    finally:
        for app in apps:
            await app.aclose()
        delete_prefix(f"threadwise:dedup:slack:{run}")
        delete_prefix(f"threadwise:thread:slack:{run}")


async def test_with_redis_url_a_vote_replayed_to_another_replica_is_counted_once(
    make_engine: Callable[..., Engine],
) -> None:
    settings = load_settings(redis_url=REDIS_URL)
    engine = make_engine()
    apps = [build_chat_app(settings, engine, platforms=[]) for _ in range(2)]
    run = uuid.uuid4().hex
    try:
        for app in (*apps, *apps):  # the same click twice at each replica
            await app.feedback.record(FeedbackVote("slack", "slack-T1", "U1", "down", ref=run))
        await apps[1].feedback.record(FeedbackVote("slack", "slack-T1", "U2", "down", ref=run))

        counted = [
            app.metrics.registry.get_sample_value(
                "threadwise_feedback_total", {"platform": "slack", "kb": "slack-T1", "vote": "down"}
            )
            or 0
            for app in apps
        ]
        assert counted == [1, 1]  # U1's at the first replica, U2's at the second
    finally:
        for app in apps:
            await app.aclose()
        delete_prefix(f"threadwise:vote:slack:{run}")


def test_an_unreachable_redis_stops_start_up_naming_redis_url(make_engine: Callable[..., Engine]) -> None:
    settings = load_settings(redis_url=DOWN)
    with pytest.raises(
        ConfigError, match=r"^REDIS_URL='redis://:\*\*\*@127\.0\.0\.1:1/0' is not usable"
    ) as err:
        build_chat_app(settings, make_engine(), platforms=[])
    assert "s3cret-pw" not in str(err.value)
    with pytest.raises(ConfigError, match="REDIS_URL"):
        build_query_cache(settings)


def test_threadwise_exits_with_what_to_fix_when_redis_does_not_answer(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("REDIS_URL", DOWN)
    assert main(["docs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("threadwise: REDIS_URL=")
    assert "Start Redis there, or correct REDIS_URL" in err and "s3cret-pw" not in err


def test_a_redis_url_that_is_not_a_url_is_a_config_error(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"REDIS_URL='localhost:6379' is not usable: ValueError"):
        build_query_cache(load_settings(redis_url="localhost:6379"))


class OwnRedis:
    """A redis-server of this test's own, to stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed (apt-get install redis-server)"
        args = [server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


async def _ready(client: TestClient, status: int) -> dict[str, Any]:
    for _ in range(100):  # the model loads in the background (already cached in tests)
        response = await client.get("/ready")
        if response.status == status:
            break
        await asyncio.sleep(0.1)
    assert response.status == status
    body: dict[str, Any] = await response.json()
    return body


async def test_ready_is_503_while_redis_is_down_and_200_when_it_is_back(
    make_engine: Callable[..., Engine], own_redis: OwnRedis
) -> None:
    engine = make_engine()
    chat = build_chat_app(load_settings(redis_url=own_redis.url), engine, platforms=[])
    client = TestClient(TestServer(build_app(engine=engine, chat=chat, check_timeout=0.5)))
    await client.start_server()
    try:
        assert await _ready(client, 200) == {"status": "ready"}
        own_redis.stop()
        body = await _ready(client, 503)
        assert list(body["failed"]) == ["redis"]
        assert "ConnectionError" in body["failed"]["redis"]
        assert (await client.get("/health")).status == 200  # alive all the same
        own_redis.start()
        assert await _ready(client, 200) == {"status": "ready"}
    finally:
        await client.close()
