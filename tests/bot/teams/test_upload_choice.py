"""Choosing who may ask about a file sent in a Teams personal chat. The README promises buttons
(*Share with the workspace*, *Keep it for me*) under the reply on both platforms; Teams renders none."""

from __future__ import annotations

import json

import pytest

from rag.scopes import private_scope
from tests.bot.teams.activities import USER_AAD, personal_file_upload
from tests.bot.teams.conftest import KB, VPN_GUIDE, TeamsBotFactory
from tests.fakes.bot_connector import FakeBotConnector


@pytest.mark.xfail(
    strict=True,
    reason="Teams renders no buttons for a personal-chat upload's choice (bot/teams/render.py knows no "
    "ScopeOffer, bot/teams/translate.py no click for it), yet the reply says to choose below and the "
    "default applies unasked: Action.Execute buttons and their invoke are a feature of their own",
)
async def test_a_personal_chat_upload_that_asks_for_a_choice_offers_buttons_to_make_it(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=10)
    url = fake.add_file("vpn.md", VPN_GUIDE)

    await bot.post(personal_file_upload("vpn.md", url, service_url=fake.service_url))

    (document,) = await bot.engine.documents(KB)
    assert document.scope == private_scope(USER_AAD)
    reply = fake.activities("POST", type="message")[-1]
    assert "Choose who can ask about it" in reply.text
    cards = json.dumps(reply.body.get("attachments") or [])
    assert "Keep it for me" in cards and "Share with the workspace" in cards
