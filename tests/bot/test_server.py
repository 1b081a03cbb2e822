"""The HTTP service: /health at once, /ready only when the model is loaded and Chroma answers."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bot.compose import build_chat_app
from bot.server import build_app
from bot.settings import Settings
from tests.conftest import EngineFactory


async def _client(engine: Any) -> TestClient:
    chat = build_chat_app(Settings(), engine, platforms=[])
    client = TestClient(TestServer(build_app(engine=engine, chat=chat, check_timeout=0.5)))
    await client.start_server()
    return client


async def test_health_and_ready(make_engine: EngineFactory) -> None:
    client = await _client(make_engine())
    try:
        health = await client.get("/health")
        assert health.status == 200 and await health.json() == {"status": "ok"}
        for _ in range(100):  # the model loads in the background (already cached in tests)
            ready = await client.get("/ready")
            if ready.status == 200:
                break
            await asyncio.sleep(0.1)
        assert ready.status == 200 and (await ready.json())["status"] == "ready"
    finally:
        await client.close()


class _DeadStore:
    """A store whose server has gone away."""

    def ping(self) -> None:
        raise ConnectionError("Chroma at chroma:8000 refused the connection")


async def test_ready_is_503_with_the_reason_when_chroma_is_down(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine._store = _DeadStore()  # type: ignore[assignment]
    client = await _client(engine)
    try:
        ready = await client.get("/ready")
        body = await ready.json()
        assert ready.status == 503
        assert "ConnectionError" in body["failed"]["chroma"]
        assert (await client.get("/health")).status == 200  # alive all the same
    finally:
        await client.close()
