"""A file posted in a Teams team channel (or group chat) with the bot's mention becomes that channel's
document: read through Microsoft Graph with the app's own token, answered from in that channel's
threads only. Everything real from the signed activity to the reply; Microsoft is two fakes on
127.0.0.1: the Bot Connector (replies) and FakeGraph (Entra's token endpoint, Graph's shares API and
SharePoint's download host).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core import text
from bot.settings import DEFAULT_TEAMS_FILE_HOSTS, Settings
from bot.teams import text as teams_text
from bot.teams.outbound import TeamsOutbound
from bot.teams.places import Place
from bot.teams.translate import shared_file
from rag.errors import RetryableError
from tests.bot.teams.activities import (
    APP_ID,
    CHANNEL,
    GROUP_CHAT,
    TENANT,
    USER_AAD,
    channel_file,
    channel_mention,
    group_chat_mention,
    personal_message,
    reference_attachment,
)
from tests.bot.teams.conftest import KB, VPN_GUIDE, Signer, TeamsBot, TeamsBotFactory
from tests.fakes.bot_connector import TEAM_GROUP, FakeBotConnector
from tests.fakes.graph import SECRET, FakeGraph

QUESTION = "How do I rotate the VPN certificate?"
OTHER_CHANNEL = "19:0a1b2c3d4e5f60718293a4b5c6d7e8f9@thread.tacv2"
HERE = Place(kind="channel", group=TEAM_GROUP, channel=CHANNEL)  # a file posted in CHANNEL, team known
# Words only the VPN guide holds: an answer that shows them was read from it.
SECRET_WORDS = ("Keychain", "delete the old certificate")


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph(tenant=TENANT) as server:
        yield server


async def _bot(make_teams_bot: TeamsBotFactory, graph: FakeGraph, **settings: Any) -> TeamsBot:
    """A bot with its app credentials, whose Entra and Graph are the fake's."""
    settings.setdefault("app_id", APP_ID)
    settings.setdefault("teams_file_hosts", [*DEFAULT_TEAMS_FILE_HOSTS, graph.base_url])
    return await make_teams_bot(login_url=graph.login_url, graph_api_url=graph.graph_url, **settings)


def _last(fake: FakeBotConnector) -> str:
    """The bot's last message as a user sees it: its text and its citations."""
    reply = fake.activities(type="message")[-1]
    return reply.text + str(reply.body.get("entities", ""))


def _in_other_channel(activity: dict[str, Any]) -> dict[str, Any]:
    activity["conversation"]["id"] = f"{OTHER_CHANNEL};messageid=1759990000001"
    activity["channelData"].update(channel={"id": OTHER_CHANNEL}, teamsChannelId=OTHER_CHANNEL)
    return activity


async def test_a_file_shared_in_a_channel_answers_in_that_channel_only(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    link = graph.add_file("vpn.md", VPN_GUIDE)

    await bot.post(channel_file("vpn.md", link, service_url=fake.service_url), token=sign())
    added = fake.activities(type="message")[-1].text
    await bot.post(
        channel_mention(QUESTION, service_url=fake.service_url, root="1759990000000"), token=sign()
    )
    in_channel = _last(fake)
    await bot.post(_in_other_channel(channel_mention(QUESTION, service_url=fake.service_url)), token=sign())
    other_channel = _last(fake)
    await bot.post(personal_message(QUESTION, service_url=fake.service_url), token=sign())
    personal = _last(fake)

    assert added.startswith("✅ Added **vpn.md**") and "Only this channel can ask about it." in added
    assert "vpn.md" in in_channel and all(word in in_channel for word in SECRET_WORDS)
    for elsewhere in (other_channel, personal):
        assert "vpn.md" not in elsewhere and not any(word in elsewhere for word in SECRET_WORDS)


async def test_the_file_is_read_with_an_app_token_for_graph_and_no_token_goes_to_sharepoint(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)

    for name in ("vpn.md", "vpn-2.md"):  # two files: one token, kept until shortly before it expires
        activity = channel_file(name, graph.add_file(name, VPN_GUIDE), service_url=fake.service_url)
        await bot.post(activity, token=sign())

    (asked,) = graph.graph_token_requests
    assert (asked["tenant"], asked["client_id"]) == (TENANT, APP_ID)
    assert [r["authorization"].split()[0] for r in graph.graph_requests] == ["Bearer", "Bearer"]
    assert len(graph.downloads) == 2 and all("authorization" not in d for d in graph.downloads)
    assert sorted(d.name for d in await bot.engine.documents(KB)) == ["vpn-2.md", "vpn.md"]


async def test_a_file_shared_in_a_group_chat_answers_in_that_chat_only(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    """A group chat's file lives in its sender's OneDrive; Graph's shares call reads it the same way."""
    bot = await _bot(make_teams_bot, graph)
    shared = group_chat_mention("", service_url=fake.service_url)
    link = graph.add_file("vpn.md", VPN_GUIDE, owner=USER_AAD)
    shared["attachments"].append(reference_attachment("vpn.md", link))

    await bot.post(shared, token=sign())
    added = fake.activities(type="message")[-1].text
    await bot.post(group_chat_mention(QUESTION, service_url=fake.service_url), token=sign())
    in_chat = _last(fake)
    await bot.post(channel_mention(QUESTION, service_url=fake.service_url), token=sign())
    in_channel = _last(fake)

    assert added.startswith("✅ Added **vpn.md**") and "Only this channel can ask about it." in added
    assert all(word in in_chat for word in SECRET_WORDS)
    assert "vpn.md" not in in_channel and not any(word in in_channel for word in SECRET_WORDS)
    (document,) = await bot.engine.documents(KB)
    assert document.scope == f"channel:{GROUP_CHAT}"


@pytest.mark.parametrize(
    ("status", "code", "wording"),
    [
        (403, "accessDenied", teams_text.GRAPH_FORBIDDEN),
        (401, "InvalidAuthenticationToken", teams_text.GRAPH_FORBIDDEN),
        (404, "itemNotFound", teams_text.SHARED_FILE_GONE),
    ],
)
async def test_graph_refusing_the_file_gets_a_clear_reply_and_nothing_is_indexed(
    make_teams_bot: TeamsBotFactory,
    fake: FakeBotConnector,
    graph: FakeGraph,
    sign: Signer,
    status: int,
    code: str,
    wording: str,
) -> None:
    bot = await _bot(make_teams_bot, graph)
    link = graph.add_file("vpn.md", VPN_GUIDE)
    if status == 404:
        graph.delete(link)
    else:
        graph.forbid(status, code)

    await bot.post(channel_file("vpn.md", link, service_url=fake.service_url), token=sign())

    assert fake.activities(type="message")[-1].text == "⚠️ " + wording.format(name="vpn.md")
    assert graph.downloads == []
    assert await bot.engine.documents(KB) == []


async def test_entra_refusing_the_graph_token_gets_a_clear_reply(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    """A multi-tenant bot whose app no admin of this organisation consented to: Entra refuses it a
    token in the organisation's tenant (its Bot Framework token, from botframework.com, still comes)."""
    bot = await _bot(make_teams_bot, graph)
    graph.refuse_tokens(TENANT)

    await bot.post(
        channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url),
        token=sign(),
    )

    reply = fake.activities(type="message")[-1].text
    assert reply == "⚠️ " + teams_text.GRAPH_FORBIDDEN.format(name="vpn.md")
    assert graph.graph_requests == []
    assert await bot.engine.documents(KB) == []


async def test_channel_uploads_off_refuses_the_file_without_fetching_it(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph, channel_uploads="off")

    await bot.post(
        channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url),
        token=sign(),
    )

    assert fake.activities(type="message")[-1].text == text.CHANNEL_UPLOADS_OFF
    assert graph.graph_token_requests == [] and graph.graph_requests == []
    assert await bot.engine.documents(KB) == []


async def test_a_file_posted_without_a_mention_is_ignored(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    link = graph.add_file("vpn.md", VPN_GUIDE)

    response = await bot.post(
        channel_file("vpn.md", link, service_url=fake.service_url, mentioned=False), token=sign()
    )

    assert response.status == 200
    assert fake.calls == [] and graph.graph_requests == []
    assert await bot.engine.documents(KB) == []


async def test_a_file_reference_without_its_link_gets_a_clear_reply(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)

    await bot.post(channel_file("vpn.md", None, service_url=fake.service_url), token=sign())

    assert fake.activities(type="message")[-1].text == "⚠️ " + teams_text.SHARED_FILE_NO_LINK.format(
        name="vpn.md"
    )
    assert graph.graph_requests == []


async def test_without_app_credentials_channel_files_are_not_read(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph
) -> None:
    """The Bot Framework Emulator's set-up (no MICROSOFT_APP_ID): nothing to get a Graph token with."""
    bot = await _bot(make_teams_bot, graph, app_id=None)

    await bot.post(channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url))

    reply = fake.activities(type="message")[-1].text
    assert reply == "⚠️ " + teams_text.GRAPH_NOT_SET_UP.format(name="vpn.md")
    assert graph.graph_token_requests == [] and graph.graph_requests == []


# -- what Graph's answer may lead to ----------------------------------------------------------------


@pytest.fixture
async def internal() -> AsyncIterator[FakeBotConnector]:
    """A service on the bot's own network (another port on 127.0.0.1) that must stay unreachable."""
    async with FakeBotConnector() as server:
        yield server


async def test_a_redirect_to_a_host_that_is_not_sharepoint_is_refused(
    make_teams_bot: TeamsBotFactory,
    fake: FakeBotConnector,
    graph: FakeGraph,
    internal: FakeBotConnector,
    sign: Signer,
) -> None:
    bot = await _bot(make_teams_bot, graph)
    link = graph.add_file("keys.md", VPN_GUIDE)
    graph.redirect(link, internal.add_file("keys.md", b"# Internal\n\nThe root password is hunter2.\n"))

    await bot.post(channel_file("keys.md", link, service_url=fake.service_url), token=sign())

    assert fake.activities(type="message")[-1].text == "⚠️ " + teams_text.FILE_HOST_REFUSED.format(
        name="keys.md"
    )
    assert internal.downloads == []
    assert await bot.engine.documents(KB) == []


@pytest.mark.parametrize(
    "link",
    [
        "https://files.attacker.example/keys.md",
        "http://contoso.sharepoint.com/sites/Engineering/keys.md",
        "https://10.0.0.7/keys.md",
    ],
)
async def test_a_link_outside_teams_file_hosts_is_not_sent_to_graph(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer, link: str
) -> None:
    bot = await _bot(make_teams_bot, graph)

    await bot.post(channel_file("keys.md", link, service_url=fake.service_url), token=sign())

    assert fake.activities(type="message")[-1].text == "⚠️ " + teams_text.FILE_HOST_REFUSED.format(
        name="keys.md"
    )
    assert graph.graph_token_requests == [] and graph.graph_requests == []


async def test_a_file_of_unknown_length_is_cut_off_at_the_size_limit(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph, max_bytes=1024)
    link = graph.add_file("handbook.md", b"# Handbook\n\n" + b"All about us. " * 100_000, chunked=True)

    await bot.post(channel_file("handbook.md", link, service_url=fake.service_url), token=sign())

    reply = fake.activities(type="message")[-1].text
    assert reply == "⚠️ " + text.FILE_TOO_LARGE.format(name="handbook.md", limit="1 KB")
    assert await bot.engine.documents(KB) == []


async def test_graph_out_of_reach_is_a_retryable_error(graph: FakeGraph) -> None:
    """What a queue worker retries: the fetcher as the worker builds it, with Graph not answering."""
    settings = Settings(
        microsoft_app_id=APP_ID,
        microsoft_app_password=SECRET,
        graph_api_url="http://127.0.0.1:9",  # the discard port: nothing listens there
    )
    outbound = TeamsOutbound.from_settings(settings, login_url=graph.login_url)
    file = shared_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), tenant=TENANT, place=HERE)

    try:
        with pytest.raises(RetryableError):
            await outbound.fetcher.fetch(file, max_bytes=1 << 20)
    finally:
        await outbound.close()
    (asked,) = graph.token_requests  # the token came; Graph did not answer
    assert asked["scope"] == "http://127.0.0.1:9/.default"


# -- Entra's token endpoint failing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, '{"error": "temporarily_unavailable", "error_description": "AADSTS50196: try again"}'),
        (500, '{"error": "server_error", "error_description": "AADSTS90033: transient error"}'),
        (429, '{"error": "temporarily_unavailable", "error_description": "AADSTS50196: throttled"}'),
        (502, ""),
        (504, "<html>Gateway Time-out</html>"),
    ],
)
async def test_entra_down_is_retryable_not_a_missing_permission(
    graph: FakeGraph, status: int, body: str
) -> None:
    """Entra failing on its side (5xx, 429) is the network's fault: the queue retries. Told as "an
    admin must grant Files.Read.All" it would send people to fix what is not broken, and never retry."""
    settings = Settings(microsoft_app_id=APP_ID, microsoft_app_password=SECRET, graph_api_url=graph.graph_url)
    outbound = TeamsOutbound.from_settings(settings, login_url=graph.login_url)
    graph.fail_tokens(status, body)
    file = shared_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), tenant=TENANT, place=HERE)

    try:
        with pytest.raises(RetryableError):
            await outbound.fetcher.fetch(file, max_bytes=1 << 20)
    finally:
        await outbound.close()
    assert graph.graph_requests == []


async def test_entra_down_gets_no_reply_about_permissions(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    graph.fail_tokens(503, '{"error": "temporarily_unavailable"}')

    await bot.post(
        channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url),
        token=sign(),
    )

    said = fake.activities(type="message")[-1].text
    assert said != "⚠️ " + teams_text.GRAPH_FORBIDDEN.format(name="vpn.md")
    assert "try again" in said
    assert await bot.engine.documents(KB) == []
