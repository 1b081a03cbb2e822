"""A Teams bot on our aiohttp app (127.0.0.1), replying to a fake Bot Connector (127.0.0.1).

Everything real from the HTTP request to the reply: aiohttp, botbuilder's CloudAdapter and connector
client, the dispatcher, runner, handler and engine (model and Chroma). Only Microsoft is a fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from botframework.connector.auth import ChannelValidation

from bot.compose import ChatApp, build_service
from bot.settings import DEFAULT_TEAMS_FILE_HOSTS, Settings
from bot.teams.platform import teams
from bot.teams.routes import TeamsRoutes
from rag.answer import Answerer
from rag.engine import Engine
from tests.bot.teams.activities import APP_ID, TENANT
from tests.conftest import EngineFactory
from tests.fakes.bot_connector import FakeBotConnector

KB = f"teams-{TENANT}"
VPN_GUIDE = (
    b"# VPN guide\n\nTo rotate the VPN certificate, open the Keychain app and delete the old certificate. "
    b"Then download the new certificate from the IT portal at it.example.com and double-click it.\n"
)


@dataclass
class TeamsBot:
    client: TestClient
    fake: FakeBotConnector
    platform: TeamsRoutes
    chat: ChatApp
    engine: Engine

    async def post(self, activity: dict[str, Any], *, token: str | None = None) -> ClientResponse:
        """POST an activity to /api/messages as the Bot Connector does, then let the job finish."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post("/api/messages", json=activity, headers=headers)
        await response.read()
        await self.chat.runner.drain()
        return response


TeamsBotFactory = Callable[..., Awaitable[TeamsBot]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotConnector]:
    async with FakeBotConnector(tenant=TENANT) as connector:
        yield connector


@pytest.fixture
async def make_teams_bot(
    make_engine: EngineFactory, fake: FakeBotConnector
) -> AsyncIterator[TeamsBotFactory]:
    clients: list[TestClient] = []

    async def factory(
        *,
        app_id: str | None = None,
        app_password: str = "fake-password",
        answerer: Answerer | None = None,
        max_bytes: int = 10 * 1024 * 1024,
        auth_timeout: float = 5.0,
        login_url: str | None = None,
        **settings: Any,
    ) -> TeamsBot:
        engine = make_engine(answerer=answerer, max_bytes=max_bytes)
        # The fake's file server is on 127.0.0.1: only an exact loopback origin lets it through.
        settings.setdefault("teams_file_hosts", [*DEFAULT_TEAMS_FILE_HOSTS, fake.base_url])
        # A personal-chat upload's default scope at once: the tests of choosing it set minutes of their own.
        settings.setdefault("upload_choice_minutes", 0)
        if app_id:
            settings.update(microsoft_app_id=app_id, microsoft_app_password=app_password)
        config = Settings(rate_limit_requests_per_minute=600, rate_limit_burst=100, **settings)
        platform = teams(login_url=login_url or fake.login_url, auth_timeout=auth_timeout)
        service = build_service(config, engine, platforms=[platform])
        routes = service.inbound["teams"]
        assert isinstance(routes, TeamsRoutes)
        client = TestClient(TestServer(service.app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return TeamsBot(client, fake, routes, service.chat, engine)

    yield factory
    for client in clients:
        await client.close()


Signer = Callable[..., str]


@pytest.fixture
def sign(monkeypatch: pytest.MonkeyPatch, fake: FakeBotConnector) -> Signer:
    """Bot Framework tokens as the real service signs them (keys served by the fake), for APP_ID."""
    monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", fake.openid_url)

    def token(**claims: object) -> str:
        return fake.sign({"aud": APP_ID, "serviceurl": fake.service_url, **claims})

    return token
