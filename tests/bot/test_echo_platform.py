"""A platform added with one package (tests/bot/echo) and one row of the platform table goes through
the dispatcher, the in-process runner and the engine like Slack and Teams."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.compose import build_service
from bot.core import text
from bot.core.model import Reply, Working
from bot.platforms import PLATFORMS, Row, enabled_platforms
from bot.settings import Settings
from tests.bot.echo import ROUTE, EchoOutbound
from tests.conftest import EngineFactory

ECHO = Row("tests.bot.echo", lambda settings: True)
VPN_GUIDE = b"# VPN guide\n\nTo rotate the VPN certificate, open the Keychain app and delete the old one.\n"


async def test_a_platform_of_one_package_and_one_row_answers_through_the_engine(
    make_engine: EngineFactory, clean_env: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    await engine.ingest("echo-lab", "vpn.md", VPN_GUIDE)
    settings = Settings(rate_limit_requests_per_minute=600, rate_limit_burst=100)
    service = build_service(settings, engine, platforms=enabled_platforms(settings, [*PLATFORMS, ECHO]))
    echo = service.outbound["echo"]
    assert isinstance(echo, EchoOutbound)
    async with TestClient(TestServer(service.app, host="127.0.0.1")) as http:
        question = {"id": "m1", "user": "U1", "text": "How do I rotate the VPN certificate?"}
        aside = {"id": "m2", "user": "U2", "text": "lunch?", "thread": "elsewhere", "to_bot": False}
        follow_up = {"id": "m3", "user": "U1", "text": "And the old one?", "thread": "m1", "to_bot": False}
        for message in (question, aside, follow_up):
            assert (await http.post(ROUTE, json=message)).status == 202
            await service.inbound["echo"].drain()

    steps = [step for step, _ in echo.shown]
    assert steps == ["begin", "finish", "begin", "finish"]  # the aside was not for the bot
    begin, answer = echo.shown[0][1], echo.shown[1][1]
    assert begin == Working("ask", question=question["text"], new_thread=True)
    assert isinstance(answer, Reply) and answer.kind == "answer"
    assert "Keychain" in answer.text and [c.document for c in answer.citations] == ["vpn.md"]
    assert echo.shown[2][1] == Working("ask", question=follow_up["text"], new_thread=False)
    assert text.working(begin) == text.THINKING
