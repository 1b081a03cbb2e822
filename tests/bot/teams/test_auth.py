"""/api/messages with MICROSOFT_APP_ID set: only a valid Bot Framework token gets in, and a bad one is a
401, never a 500 or a stuck event loop.

botbuilder validates the JWT against keys from its OpenID metadata URL; the tests point that URL (the
class attribute botbuilder reads) at the fake, which serves its own signing key, so no request leaves
127.0.0.1. The bot's outgoing token comes from the fake's token endpoint.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from botframework.connector.auth import ChannelValidation
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.teams.auth import is_jwt_shaped
from tests.bot.teams.activities import APP_ID, channel_mention, personal_message
from tests.bot.teams.conftest import KB, VPN_GUIDE, TeamsBotFactory
from tests.fakes.bot_connector import FakeBotConnector

QUESTION = "How do I rotate the VPN certificate?"


@pytest.fixture(autouse=True)
def _metadata_from_the_fake(monkeypatch: pytest.MonkeyPatch, fake: FakeBotConnector) -> None:
    monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", fake.openid_url)


def _token(fake: FakeBotConnector, **claims: object) -> str:
    return fake.sign({"aud": APP_ID, "serviceurl": fake.service_url, **claims})


async def test_a_request_with_a_valid_token_is_answered_with_the_bots_own_token(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(app_id=APP_ID)
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    first = await bot.post(channel_mention(QUESTION, service_url=fake.service_url), token=_token(fake))
    second = await bot.post(personal_message(QUESTION, service_url=fake.service_url), token=_token(fake))

    assert (first.status, second.status) == (200, 200)
    assert [c.type for c in fake.calls] == ["typing", "message", "typing", "message"]
    assert {c.headers["authorization"] for c in fake.calls} == {"Bearer fake-bot-token-1"}
    (grant,) = fake.token_requests  # fetched once, then reused
    assert grant["client_id"] == APP_ID
    assert grant["scope"] == "https://api.botframework.com/.default"


async def test_when_the_bots_own_token_is_refused_the_request_fails_as_500_not_401(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    # A 401 would tell the Bot Connector its token was bad; the fault is ours (a wrong client secret).
    bot = await make_teams_bot(app_id=APP_ID, app_password="wrong-password")

    response = await bot.post(personal_message(QUESTION, service_url=fake.service_url), token=_token(fake))

    assert response.status == 500
    assert fake.calls == []
    assert len(fake.token_requests) == 1


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",  # alg "none", no signature
        "Basic dXNlcjpwYXNz",
        "bearer eyJ0eXAiOiJKV1QifQ.e30.e30",
    ],
    ids=["none", "empty", "no-token", "garbage", "three-dots", "alg-none", "basic", "lowercase"],
)
async def test_a_missing_or_malformed_authorization_is_401(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, header: str | None
) -> None:
    bot = await make_teams_bot(app_id=APP_ID)
    headers = {"Authorization": header} if header is not None else {}

    response = await bot.client.post(
        "/api/messages", json=personal_message(QUESTION, service_url=fake.service_url), headers=headers
    )

    assert response.status == 401
    assert fake.calls == [] and fake.openid_requests == 0  # refused before any key lookup


async def test_foreign_tokens_are_401_not_500(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(app_id=APP_ID)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    foreign = {
        "another issuer": fake.sign({"aud": APP_ID, "iss": "https://evil.example.com"}),
        "another key": fake.sign({"aud": APP_ID, "serviceurl": fake.service_url}, key=stranger),
        "an unknown key id": fake.sign({"aud": APP_ID}, kid="someone-elses-key"),
        "another bot": _token(fake, aud="00000000-0000-0000-0000-000000000000"),
        "another service url": _token(fake, serviceurl="https://smba.trafficmanager.net/amer/x/"),
        "expired": _token(fake, nbf=now - 7200, exp=now - 3600),
    }

    statuses = {}
    for reason, token in foreign.items():
        response = await bot.post(personal_message(QUESTION, service_url=fake.service_url), token=token)
        statuses[reason] = response.status

    assert statuses == dict.fromkeys(foreign, 401)
    assert fake.calls == []


async def test_an_unanswered_key_lookup_is_a_bounded_503_and_the_loop_stays_free(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(app_id=APP_ID, auth_timeout=0.5)
    fake.hang_openid()

    started = time.monotonic()
    request = asyncio.create_task(
        bot.post(personal_message(QUESTION, service_url=fake.service_url), token=_token(fake))
    )
    await asyncio.sleep(0.1)
    health = await bot.client.get("/health")  # answered while the validation waits
    response = await request

    assert health.status == 200
    assert response.status == 503
    assert time.monotonic() - started < 3
    assert fake.calls == []


async def test_without_an_app_id_the_emulator_needs_no_token(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()

    response = await bot.post(personal_message("help", service_url=fake.service_url))

    assert response.status == 200
    (reply,) = fake.calls
    assert "authorization" not in reply.headers
    assert fake.token_requests == []


def test_jwt_shape_check() -> None:
    fake = FakeBotConnector()
    assert is_jwt_shaped(fake.sign({"aud": APP_ID}))
    assert not is_jwt_shaped("a.b.c")
    assert not is_jwt_shaped(fake.sign({"aud": APP_ID}) + ".extra")
