"""/ready follows a real Chroma server: paused (SIGSTOP) or killed → 503 naming chroma within the
check timeout (while /health stays 200), answering again, or started again on the same port and data →
200, and the bot answers from the same documents.

Real processes: `chroma run` and `threadwise serve` (CHROMA_HOST), the fake Slack in this test's loop.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.bot.slack import payloads
from tests.bot.slack.conftest import VPN_GUIDE
from tests.bot.test_scale_out import (
    VPN_ANSWER,
    VPN_QUESTION,
    Serve,
    fake_slack,  # noqa: F401 (a fixture)
    mention,
    shows,
    slack_env,
    start_serve,
    upload,
)
from tests.fakes.slack_server import FakeSlack
from tests.processes import Processes, ready, until

pytestmark = pytest.mark.slow

CHECK_TIMEOUT_S = 1.5  # HEALTH_CHECK_TIMEOUT: /ready waits this long for each dependency


async def _get(url: str) -> tuple[int, Any, float]:
    """Status, JSON body and how long the answer took."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json(), time.monotonic() - started


async def test_ready_is_503_naming_chroma_while_the_server_is_down_and_200_when_it_is_back(
    tmp_path: Path,
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    fake = fake_slack
    with Processes(tmp_path) as procs:
        chroma, port = await procs.chroma()
        env = {
            **slack_env(fake),
            "CHROMA_HOST": "127.0.0.1",
            "CHROMA_PORT": str(port),
            "HEALTH_CHECK_TIMEOUT": str(CHECK_TIMEOUT_S),
        }
        serve = start_serve(procs, "serve", env)
        await until(lambda: ready(serve.url), 150, serve.proc, chroma)
        shared = upload(fake, "vpn.md", VPN_GUIDE)
        assert await serve.send(shared) == 200
        await fake.wait_for(lambda: shows(fake, payloads.DM, shared["event"]["ts"], "Added"), 30)

        # A server that stops answering (its connections stay open): /ready says so in time.
        chroma.signal(signal.SIGSTOP)
        try:
            await _unavailable_within(serve, CHECK_TIMEOUT_S + 3, f"no answer within {CHECK_TIMEOUT_S:g} s")
        finally:
            chroma.signal(signal.SIGCONT)
        await until(lambda: ready(serve.url), 10, serve.proc, chroma)

        # A server that is gone.
        chroma.popen.kill()
        chroma.wait(10)
        await _unavailable_within(serve, CHECK_TIMEOUT_S + 3, "ConnectError")
        status, body, took = await _get(f"{serve.url}/health")
        assert (status, body) == (200, {"status": "ok"}) and took < 1.0

        # The same server again: same port, same data directory.
        chroma, _ = await procs.chroma(port=port)
        await until(lambda: ready(serve.url), 20, serve.proc, chroma)

        question = mention(VPN_QUESTION)
        assert await serve.send(question) == 200
        await fake.wait_for(lambda: shows(fake, payloads.CHANNEL, question["event"]["ts"], VPN_ANSWER), 30)
        (answer,) = fake.thread(payloads.CHANNEL, question["event"]["ts"])
        sources = answer["blocks"][1]["text"]["text"]
        assert sources.startswith("*Sources*\n[1] <") and "|vpn.md>" in sources


async def _unavailable_within(serve: Serve, seconds: float, reason: str) -> None:
    """/ready turns 503 within `seconds`, naming chroma alone, for `reason`."""
    started = time.monotonic()

    async def unavailable() -> bool:
        return (await _get(f"{serve.url}/ready"))[0] == 503

    await until(unavailable, seconds, serve.proc)
    assert time.monotonic() - started < seconds
    status, body, _ = await _get(f"{serve.url}/ready")
    assert status == 503 and list(body["failed"]) == ["chroma"], body
    assert reason in body["failed"]["chroma"], body
