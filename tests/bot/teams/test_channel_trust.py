"""Only Teams can vouch for a tenant: a validly signed activity from another Bot Framework channel (Web
Chat, Direct Line…) is refused before its claimed tenant, user or admin id is believed.

The Bot Framework signs every channel's activities with the same keys, and Web Chat and Direct Line let
the client write `channelData.tenant.id` and `from.aadObjectId` itself: accepted, such an activity reads
and deletes another organisation's documents, as an admin if it names one.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.bot.teams.activities import APP_ID, personal_message
from tests.bot.teams.conftest import KB, VPN_GUIDE, Signer, TeamsBotFactory
from tests.fakes.bot_connector import FakeBotConnector

ADMIN_AAD = "0a1b2c3d-0000-4000-8000-00000000ad01"


def _from_channel(channel: str, text: str, fake: FakeBotConnector) -> dict[str, Any]:
    """A Teams-shaped activity whose client chose the victim's tenant and an admin's object id."""
    activity = personal_message(text, service_url=fake.service_url, user_aad=ADMIN_AAD)
    activity["channelId"] = channel
    return activity


@pytest.mark.parametrize("channel", ["webchat", "directline", "skype", "emulator"])
async def test_a_signed_activity_from_another_channel_is_403_and_reads_or_deletes_nothing(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer, channel: str
) -> None:
    bot = await make_teams_bot(app_id=APP_ID, admin_user_ids=[ADMIN_AAD])
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader="the-owner")

    listing = await bot.post(_from_channel(channel, "docs", fake), token=sign())
    deletion = await bot.post(_from_channel(channel, "forget vpn.md", fake), token=sign())

    assert (listing.status, deletion.status) == (403, 403)
    assert fake.calls == []  # no reply, so nothing of the knowledge base went anywhere
    assert [d.name for d in await bot.engine.documents(KB)] == ["vpn.md"]


async def test_the_same_signed_activity_from_teams_is_answered(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer
) -> None:
    bot = await make_teams_bot(app_id=APP_ID)
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader="the-owner")

    response = await bot.post(_from_channel("msteams", "docs", fake), token=sign())

    assert response.status == 200
    (reply,) = fake.calls
    assert "vpn.md" in reply.text


async def test_without_an_app_id_only_teams_and_the_emulator_are_accepted(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()

    emulator = await bot.post(_from_channel("emulator", "help", fake))
    webchat = await bot.post(_from_channel("webchat", "help", fake))
    missing = _from_channel("msteams", "help", fake)
    del missing["channelId"]
    unnamed = await bot.post(missing)

    assert (emulator.status, webchat.status, unnamed.status) == (200, 403, 403)
    assert len(fake.calls) == 1
