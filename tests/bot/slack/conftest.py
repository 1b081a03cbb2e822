"""The Slack harness: signed requests → our aiohttp app (TestServer on 127.0.0.1) → Bolt → the real
slack_sdk client → FakeSlack on 127.0.0.1, with the real engine behind the dispatcher."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from bot.compose import ChatApp, build_service
from bot.core.feedback import FeedbackVote
from bot.settings import Settings
from bot.slack.routes import SlackRoutes
from rag.answer import DEFAULT_GROQ_MODEL, Answerer, ExtractiveAnswerer, GroqAnswerer
from rag.engine import Engine
from tests.bot.slack import payloads
from tests.conftest import EngineFactory
from tests.fakes.groq_server import FakeGroq
from tests.fakes.slack_server import FakeSlack

KB = f"slack-{payloads.TEAM}"
VPN_GUIDE = (
    b"# VPN guide\n\n## Certificates\n\nTo rotate the VPN certificate, open the Keychain app and delete the "
    b"old certificate. Then download the new certificate from the IT portal and double-click it.\n"
)
HOLIDAYS = b"# Holidays\n\nThe office is closed on the first Monday of August for the summer picnic.\n"


@dataclass
class SlackHarness:
    fake: FakeSlack
    http: TestClient
    platform: SlackRoutes
    chat: ChatApp
    engine: Engine
    votes: list[FeedbackVote] = dataclasses.field(default_factory=list)  # as handed to the intake

    async def send(
        self,
        body: dict[str, Any],
        *,
        retry_num: int | None = None,
        timestamp: int | None = None,
        secret: str = payloads.SIGNING_SECRET,
    ) -> ClientResponse:
        raw = json.dumps(body).encode()
        headers = payloads.signed_headers(
            raw, secret=secret, timestamp=timestamp, content_type="application/json"
        )
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return await self.http.post("/slack/events", data=raw, headers=headers)

    async def send_form(self, form: str) -> ClientResponse:
        raw = form.encode()
        headers = payloads.signed_headers(raw, content_type="application/x-www-form-urlencoded")
        return await self.http.post("/slack/events", data=raw, headers=headers)

    async def settle(self) -> None:
        """Wait until every accepted event has been dispatched and answered."""
        await self.platform.drain()

    def posts(self) -> list[dict[str, Any]]:
        return [c.params for c in self.fake.calls_to("chat.postMessage")]

    def updates(self) -> list[dict[str, Any]]:
        return [c.params for c in self.fake.calls_to("chat.update")]


HarnessFactory = Callable[..., Awaitable[SlackHarness]]


def groq_answerer(fake: FakeGroq) -> GroqAnswerer:
    """The real Groq SDK against the Groq fake, quoting the documents when the model fails."""
    return GroqAnswerer(
        api_key="test-key",
        model=DEFAULT_GROQ_MODEL,
        base_url=fake.base_url,
        timeout_s=10,
        max_retries=0,
        fallback=ExtractiveAnswerer(reason="unavailable"),
    )


@pytest.fixture
async def make_slack(
    make_engine: EngineFactory, clean_env: pytest.MonkeyPatch
) -> AsyncIterator[HarnessFactory]:
    """Harnesses on fresh engines; keyword arguments: answerer, follow_ups, app_token (Socket Mode)."""
    opened: list[tuple[FakeSlack, TestClient]] = []

    async def factory(
        *,
        answerer: Answerer | None = None,
        follow_ups: bool = True,
        socket_mode: bool = False,
        **settings: Any,
    ) -> SlackHarness:
        fake = FakeSlack(team_id=payloads.TEAM, bot_user_id=payloads.BOT_USER, bot_id=payloads.BOT_ID)
        await fake.start()
        values: dict[str, Any] = {
            "slack_bot_token": fake.bot_token,
            "slack_signing_secret": payloads.SIGNING_SECRET,
            "slack_app_token": fake.app_token if socket_mode else None,
            "slack_api_url": fake.api_url,
            "slack_thread_follow_ups": follow_ups,
            "rate_limit_requests_per_minute": 600,
            "rate_limit_burst": 100,
            # A DM upload's default scope at once: the tests of choosing it set minutes of their own.
            "upload_choice_minutes": 0,
        }
        config = Settings(**{**values, **settings})
        engine = make_engine(answerer=answerer)
        service = build_service(config, engine)
        routes = service.inbound["slack"]
        assert isinstance(routes, SlackRoutes)
        http = TestClient(TestServer(service.app, host="127.0.0.1"))
        await http.start_server()
        opened.append((fake, http))
        harness = SlackHarness(fake, http, routes, service.chat, engine)
        # Votes as the routes hand them on (a reason and words included), then recorded as ever.
        intake = routes._intake
        record = intake.feedback

        async def feedback(vote: FeedbackVote) -> None:
            harness.votes.append(vote)
            await record(vote)

        routes._intake = dataclasses.replace(intake, feedback=feedback)
        return harness

    yield factory
    for fake, http in opened:
        await http.close()
        await fake.close()


@pytest.fixture
async def slack(make_slack: HarnessFactory) -> SlackHarness:
    return await make_slack()
