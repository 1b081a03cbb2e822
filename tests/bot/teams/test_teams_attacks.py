"""Attacks on Teams' channel files (Graph) and on a personal-chat upload's scope buttons, through the
real /api/messages endpoint: signed activities, the fake Bot Connector and FakeGraph on 127.0.0.1.
What holds stays here as a guard; what did not is fixed, or marked xfail with why."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from bot.hosts import FileHosts
from bot.settings import DEFAULT_TEAMS_FILE_HOSTS
from bot.teams import text as teams_text
from bot.teams.files import TeamsFileFetcher
from bot.teams.graph import GraphAccess, share_id
from bot.teams.places import inside
from bot.teams.translate import shared_file
from rag.errors import RetryableError, UserFacingError
from rag.scopes import WORKSPACE, private_scope
from tests.bot.teams.activities import (
    APP_ID,
    CHANNEL,
    GROUP_CHAT,
    TEAM,
    TENANT,
    USER_AAD,
    channel_file,
    channel_mention,
    group_chat_mention,
    personal_message,
)
from tests.bot.teams.conftest import KB, VPN_GUIDE, Signer, TeamsBotFactory
from tests.bot.teams.test_channel_files import HERE, OTHER_CHANNEL, _bot, _in_other_channel, _last
from tests.bot.teams.test_upload_choice import KEEP, SHARE, _action, _invoke, _scope, _upload
from tests.fakes.bot_connector import TEAM_GROUP, FakeBotConnector
from tests.fakes.graph import SECRET, FakeGraph
from tests.fakes.local_server import LocalServer

QUESTION = "How do I rotate the VPN certificate?"
SECRET_WORDS = ("Keychain", "delete the old certificate")


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph(tenant=TENANT) as server:
        yield server


def _refused(name: str) -> str:
    return "⚠️ " + teams_text.FILE_HOST_REFUSED.format(name=name)


# -- links that must never reach Graph ----------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        "https://evil@contoso.sharepoint.com/sites/Engineering/Shared Documents/keys.md",
        "https://evil:pw@contoso.sharepoint.com/sites/Engineering/keys.md",
        "https://contoso.sharepoint.com.evil.com/sites/Engineering/keys.md",
        "https://contoso.sharepoint.com:8443/sites/Engineering/keys.md",
        "https://contoso.sharepoint.com\\@evil.com/keys.md",
        "https://evil.com\\.sharepoint.com/keys.md",
        "https://evil.com#.sharepoint.com/keys.md",
        "https://evil.com?.sharepoint.com/keys.md",
        "https://localhost/keys.md",
        "https://127.0.0.1/keys.md",
        "https://[::1]/keys.md",
        "https://169.254.169.254/latest/meta-data/",
        "https://sharepoint.com/keys.md",
        "file:///etc/passwd",
        "//contoso.sharepoint.com/keys.md",
        "https:contoso.sharepoint.com/keys.md",
        "javascript:alert(1)",
        "https://contoso.sharepoint.com%2f@evil.com/keys.md",
    ],
)
async def test_a_link_that_is_not_sharepoints_never_reaches_graph(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer, link: str
) -> None:
    bot = await _bot(make_teams_bot, graph)

    response = await bot.post(channel_file("keys.md", link, service_url=fake.service_url), token=sign())

    assert response.status == 200
    assert fake.activities(type="message")[-1].text == _refused("keys.md")
    assert graph.graph_token_requests == [] and graph.graph_requests == []
    assert await bot.engine.documents(KB) == []


@pytest.mark.parametrize("link", [["https://contoso.sharepoint.com/x.md"], {"u": 1}, 12, True, "x" * 100_000])
async def test_a_link_that_is_not_a_string_or_is_enormous_gets_a_clear_reply(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer, link: Any
) -> None:
    bot = await _bot(make_teams_bot, graph)

    response = await bot.post(channel_file("keys.md", link, service_url=fake.service_url), token=sign())

    assert response.status == 200
    assert fake.activities(type="message")[-1].text.startswith("⚠️ ")
    assert "keys.md" in fake.activities(type="message")[-1].text
    assert graph.graph_requests == []


# -- a tenant that would send the token request elsewhere ---------------------------------------------


@pytest.mark.parametrize(
    "tenant",
    ["../evil", "a/../../evil", "evil.com@x", "x?y=1", "x#y", "x%2f..%2fevil", "a b", "", "é", "a" * 500],
)
async def test_a_crafted_tenant_never_sends_the_secret_elsewhere(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer, tenant: str
) -> None:
    bot = await _bot(make_teams_bot, graph)
    activity = channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url)
    activity["channelData"]["tenant"]["id"] = tenant
    activity["conversation"]["tenantId"] = tenant

    response = await bot.post(activity, token=sign())

    assert response.status == 200
    assert graph.graph_token_requests == [] and graph.graph_requests == []
    said = fake.activities(type="message")[-1].text
    assert said == "⚠️ " + teams_text.GRAPH_NOT_SET_UP.format(name="vpn.md")


async def test_a_tenant_that_is_not_a_string_is_refused(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    activity = channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url)
    activity["channelData"]["tenant"]["id"] = {"id": "../evil"}

    response = await bot.post(activity, token=sign())

    assert response.status in (200, 400)
    assert graph.graph_token_requests == [] and graph.graph_requests == []


# -- where Graph's redirect may lead ------------------------------------------------------------------


class _Loop(LocalServer):
    """A download host (allowed, for the test) that redirects to itself forever."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/loop", self._loop)

    async def _loop(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(status=302, headers={"Location": "/loop?n=" + str(self.hits)})

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{internal}/files/keys.md",
        "https://127.0.0.1/keys.md",
        "https://10.0.0.7/keys.md",
        "https://[::ffff:127.0.0.1]/keys.md",
        "https://evil.example/keys.md",
        "https://contoso.sharepoint.com.evil.example/keys.md",
        "https://x@contoso.sharepoint.com/keys.md",
        "https://contoso.sharepoint.com:8443/keys.md",
        "file:///etc/passwd",
        "http:// bad url",
    ],
)
async def test_a_graph_redirect_off_sharepoint_is_refused(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer, location: str
) -> None:
    async with FakeBotConnector() as internal:
        bot = await _bot(make_teams_bot, graph)
        link = graph.add_file("keys.md", VPN_GUIDE)
        graph.redirect(link, location.format(internal=internal._port))

        response = await bot.post(channel_file("keys.md", link, service_url=fake.service_url), token=sign())

        assert response.status == 200
        said = fake.activities(type="message")[-1].text
        assert said.startswith("⚠️ ") and "keys.md" in said, said
        assert internal.downloads == []
        assert await bot.engine.documents(KB) == []


async def test_a_redirect_loop_ends_with_a_clear_reply(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    async with _Loop() as loop:
        hosts = [*DEFAULT_TEAMS_FILE_HOSTS, graph.base_url, loop.base_url]
        bot = await _bot(make_teams_bot, graph, teams_file_hosts=hosts)
        link = graph.add_file("keys.md", VPN_GUIDE)
        graph.redirect(link, f"{loop.base_url}/loop")

        await bot.post(channel_file("keys.md", link, service_url=fake.service_url), token=sign())

        assert fake.activities(type="message")[-1].text == _refused("keys.md")
        assert loop.hits <= 6
        assert await bot.engine.documents(KB) == []


async def test_no_graph_token_goes_to_the_download_host_even_on_graphs_own_origin(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    """A redirect back to a Graph URL (same origin as the token's) is fetched without the token."""
    bot = await _bot(make_teams_bot, graph)
    link = graph.add_file("vpn.md", VPN_GUIDE)
    other = graph.add_file("other.md", b"# Other\n\nNothing.\n")
    graph.redirect(link, f"{graph.graph_url}/v1.0/shares/{share_id(other)}/driveItem/content")

    await bot.post(channel_file("vpn.md", link, service_url=fake.service_url), token=sign())

    authorised = [r for r in graph.graph_requests if r.get("authorization")]
    assert len(authorised) == 1
    assert all("authorization" not in d for d in graph.downloads)


# -- failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_graph_failing_gets_a_clear_reply_and_nothing_is_indexed(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer, status: int
) -> None:
    bot = await _bot(make_teams_bot, graph)
    graph.forbid(status, "serviceNotAvailable")

    response = await bot.post(
        channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url),
        token=sign(),
    )

    assert response.status == 200
    said = fake.activities(type="message")[-1].text
    # In-process nothing retries: the apology asks to try again (a queue worker retries it first).
    assert "please try again" in said and "Traceback" not in said, said
    assert await bot.engine.documents(KB) == []


# -- where a channel's file answers --------------------------------------------------------------------


async def test_a_channel_file_is_not_listed_or_counted_anywhere_else(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    await bot.post(
        channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url),
        token=sign(),
    )
    assert [d.name for d in await bot.engine.documents(KB)] == ["vpn.md"]

    await bot.post(channel_mention("docs", service_url=fake.service_url), token=sign())
    assert "vpn.md" in _last(fake)
    seen = []
    for command in ("docs", "stats", QUESTION):
        await bot.post(group_chat_mention(command, service_url=fake.service_url), token=sign())
        seen.append(_last(fake))
        await bot.post(personal_message(command, service_url=fake.service_url), token=sign())
        seen.append(_last(fake))
    for said in seen:
        assert "vpn.md" not in said and not any(w in said for w in SECRET_WORDS), said
        assert "1 document" not in said, said


async def test_a_group_chat_file_is_not_answered_in_a_channel_or_personal_chat(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    shared = group_chat_mention("", service_url=fake.service_url)
    shared["attachments"].append(
        {
            "contentType": "reference",
            "name": "vpn.md",
            "contentUrl": graph.add_file("vpn.md", VPN_GUIDE, owner=USER_AAD),
        }
    )
    await bot.post(shared, token=sign())
    (doc,) = await bot.engine.documents(KB)
    assert doc.scope == f"channel:{GROUP_CHAT}"

    # The same question first where it may be answered (the cache), then elsewhere.
    await bot.post(group_chat_mention(QUESTION, service_url=fake.service_url), token=sign())
    assert all(w in _last(fake) for w in SECRET_WORDS)
    for elsewhere in (
        channel_mention(QUESTION, service_url=fake.service_url),
        personal_message(QUESTION, service_url=fake.service_url),
    ):
        await bot.post(elsewhere, token=sign())
        said = _last(fake)
        assert "vpn.md" not in said and not any(w in said for w in SECRET_WORDS), said


# -- forged clicks ------------------------------------------------------------------------------------


async def test_a_click_outside_personal_chat_is_refused(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=10)
    reply = await _upload(bot)
    share = _action(reply, SHARE)

    before = len(fake.calls)
    for kind, conversation in (("channel", f"{CHANNEL};messageid=1"), ("groupChat", GROUP_CHAT)):
        invoke = _invoke(share, reply.response_id, service_url=fake.service_url, conversation=conversation)
        invoke["conversation"]["conversationType"] = kind
        invoke["conversation"]["isGroup"] = True
        response = await bot.post(invoke)
        assert response.status == 400, kind
    # an old payload without conversationType, whose id says it is a channel
    invoke = _invoke(
        share, reply.response_id, service_url=fake.service_url, conversation=f"{CHANNEL};messageid=1"
    )
    del invoke["conversation"]["conversationType"]
    assert (await bot.post(invoke)).status == 400
    assert fake.calls[before:] == []
    assert await _scope(bot) == private_scope("c5e99701-2a32-49c1-a660-4629ceeb8c61")


async def test_a_click_from_another_tenant_is_refused(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=10)
    reply = await _upload(bot)
    invoke = _invoke(_action(reply, SHARE), reply.response_id, service_url=fake.service_url)
    other = "11111111-2222-4333-8444-555555555555"
    invoke["channelData"]["tenant"]["id"] = other
    invoke["conversation"]["tenantId"] = other

    response = await bot.post(invoke)

    assert response.status in (200, 400)
    assert await _scope(bot) != WORKSPACE
    assert [d.name for d in await bot.engine.documents(f"teams-{other}")] == []


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mangle(invoke: dict[str, Any]) -> None:
        *parents, last = path
        target = invoke
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value(target[last]) if callable(value) else value

    return mangle


_DELETE = object()
_DATA = ("value", "action", "data")
_MANGLED = {
    "choice list": _set((*_DATA, "choice"), ["workspace"]),
    "choice dict": _set((*_DATA, "choice"), {"workspace": 1}),
    "choice none": _set((*_DATA, "choice"), None),
    "choice upper": _set((*_DATA, "choice"), "WORKSPACE"),
    "upload int": _set((*_DATA, "upload"), 12),
    "upload list": _set((*_DATA, "upload"), lambda key: [key]),
    "upload huge": _set((*_DATA, "upload"), "a" * 1_000_000),
    "replyTo int": _set(("replyToId",), 12),
    "replyTo dict": _set(("replyToId",), lambda card: {"id": card}),
    "replyTo huge": _set(("replyToId",), "1" * 100_000),
    "replyTo empty": _set(("replyToId",), ""),
    "no id": _set(("id",), _DELETE),
    "id dict": _set(("id",), {"a": 1}),
    "id list": _set(("id",), ["f:1"]),
    "id huge": _set(("id",), "f:" + "1" * 100_000),
    "data string": _set(_DATA, "workspace"),
    "data list": _set(_DATA, lambda data: [data]),
    "value string": _set(("value",), "x"),
    "action list": _set(("value", "action"), lambda action: [action]),
    "from none": _set(("from",), None),
}


@pytest.mark.parametrize("mangle", sorted(_MANGLED))
async def test_a_malformed_click_is_a_400_and_changes_nothing(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, mangle: str
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=10)
    reply = await _upload(bot)
    invoke = _invoke(_action(reply, SHARE), reply.response_id, service_url=fake.service_url)
    _MANGLED[mangle](invoke)

    before = len(fake.calls)
    response = await bot.post(invoke)

    assert response.status in (400, 413), (mangle, response.status, await response.text())
    assert "Traceback" not in await response.text()
    assert fake.calls[before:] == []
    assert await _scope(bot) != WORKSPACE


@pytest.mark.parametrize(
    "name",
    [
        "message/submitAction",
        "task/submit",
        "composeExtension/submitAction",
        "actionableMessage/executeAction",
        "",
        None,
    ],
)
async def test_an_invoke_of_another_name_with_the_same_data_changes_nothing(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, name: str | None
) -> None:
    bot = await make_teams_bot(upload_choice_minutes=10)
    reply = await _upload(bot)
    invoke = _invoke(_action(reply, SHARE), reply.response_id, service_url=fake.service_url)
    invoke["name"] = name

    response = await bot.post(invoke)

    assert response.status in (200, 400, 501), (name, response.status)  # 501: botbuilder's "not mine"
    assert await _scope(bot) != WORKSPACE


async def test_a_message_carrying_the_buttons_data_changes_nothing(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    """Action.Submit's way: a message activity whose value is the data."""
    bot = await make_teams_bot(upload_choice_minutes=10)
    reply = await _upload(bot)
    data = _action(reply, SHARE)["data"]
    message = personal_message("", service_url=fake.service_url)
    message["value"] = copy.deepcopy(data)
    message["replyToId"] = reply.response_id

    response = await bot.post(message)

    assert response.status == 200
    assert await _scope(bot) != WORKSPACE
    assert "Traceback" not in fake.activities(type="message")[-1].text


async def test_keep_it_for_me_by_an_admin_on_someone_elses_upload(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    """An admin's "Keep it for me" on another's upload cannot make it the admin's."""
    admin = "0b0b0b0b-0000-4000-8000-0000000000ad"
    bot = await make_teams_bot(upload_choice_minutes=10, admin_user_ids=[admin])
    reply = await _upload(bot)
    invoke = _invoke(
        _action(reply, KEEP),
        reply.response_id,
        service_url=fake.service_url,
        user_aad=admin,
        user_id="29:admin",
        conversation="a:admin-personal",
    )

    await bot.post(invoke)

    assert await _scope(bot) == private_scope("c5e99701-2a32-49c1-a660-4629ceeb8c61")
    said = fake.activities(type="message")[-1]
    assert "Traceback" not in said.text
    print(said.method, said.conversation_id, said.text)


# -- a link to a file that is not the place's own ------------------------------------------------------


def _not_here(name: str) -> str:
    return "⚠️ " + teams_text.SHARED_FILE_NOT_HERE.format(name=name)


async def test_a_link_to_a_file_outside_the_channels_own_files_is_not_read(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    """The app's Files.Read.All reads every file in the tenant: a message whose `reference` names HR's
    file (Graph's chatMessage API lets a client write the attachments) must not make it answerable."""
    bot = await _bot(make_teams_bot, graph)
    hr = graph.add_file("salaries.md", b"# Salaries\n\nThe CEO earns 4,200,000 a year.\n", site="HR")

    await bot.post(channel_file("salaries.md", hr, service_url=fake.service_url), token=sign())

    assert fake.activities(type="message")[-1].text == _not_here("salaries.md")
    assert graph.downloads == [] and graph.graph_requests == []  # the shares call was never made
    assert await bot.engine.documents(KB) == []


async def test_a_folder_whose_name_only_starts_like_the_channels_is_not_the_channels(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    sibling = graph.add_file("pay.md", b"# Pay\n\nBands are secret.\n", folder="General-HR")

    await bot.post(channel_file("pay.md", sibling, service_url=fake.service_url), token=sign())

    assert fake.activities(type="message")[-1].text == _not_here("pay.md")
    assert graph.downloads == [] and await bot.engine.documents(KB) == []


async def test_the_channels_team_is_asked_of_the_bot_connector_once_and_its_folder_kept(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    """Channel messages carry the team's Teams id, not always its Entra group id (which Graph needs):
    the Bot Connector's TeamDetails says it. Both lookups are kept a few minutes."""
    bot = await _bot(make_teams_bot, graph)
    for name in ("vpn.md", "wifi.md"):
        link = graph.add_file(name, VPN_GUIDE)
        await bot.post(channel_file(name, link, service_url=fake.service_url), token=sign())

    assert len(await bot.engine.documents(KB)) == 2
    assert fake.team_lookups == [TEAM]
    assert [p.endswith("/filesFolder") for p in graph.lookups] == [True]


async def test_a_team_group_id_in_the_activity_is_used_without_asking_the_bot_connector(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    activity = channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url)
    activity["channelData"]["team"]["aadGroupId"] = TEAM_GROUP

    await bot.post(activity, token=sign())

    assert fake.team_lookups == [] and len(await bot.engine.documents(KB)) == 1


async def test_a_group_chat_file_outside_the_senders_onedrive_is_not_read(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    someone_else = graph.add_file("notes.md", VPN_GUIDE, owner="0b0b0b0b-0000-4000-8000-0000000000ad")
    team_site = graph.add_file("vpn.md", VPN_GUIDE)
    for name, link in (("notes.md", someone_else), ("vpn.md", team_site)):
        shared = group_chat_mention("", service_url=fake.service_url)
        shared["attachments"].append({"contentType": "reference", "name": name, "contentUrl": link})

        await bot.post(shared, token=sign())

        assert fake.activities(type="message")[-1].text == _not_here(name)
    assert graph.lookups == [f"/v1.0/users/{USER_AAD}/drive"]  # kept for the second file
    assert graph.downloads == [] and await bot.engine.documents(KB) == []


async def test_filesfolder_forbidden_gets_the_permission_reply(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    graph.forbid_lookups(403)

    await bot.post(
        channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url),
        token=sign(),
    )

    assert fake.activities(type="message")[-1].text == "⚠️ " + teams_text.GRAPH_FORBIDDEN.format(name="vpn.md")
    assert graph.downloads == [] and await bot.engine.documents(KB) == []


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (429, True), (500, True), (503, True)])
async def test_a_failed_folder_lookup_is_refused_or_retried(
    graph: FakeGraph, status: int, retryable: bool
) -> None:
    access = GraphAccess(
        app_id=APP_ID, password=SECRET, tenant_id=None, login_url=graph.login_url, graph_url=graph.graph_url
    )
    fetcher = TeamsFileFetcher(hosts=FileHosts.parse(DEFAULT_TEAMS_FILE_HOSTS), graph=access)
    graph.forbid_lookups(status)
    file = shared_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), tenant=TENANT, place=HERE)
    try:
        with pytest.raises(RetryableError if retryable else UserFacingError) as caught:
            await fetcher.fetch(file, max_bytes=1 << 20)
    finally:
        await fetcher.close()
    if not retryable:
        assert str(caught.value) == teams_text.SHARED_FILE_NOT_HERE.format(name="vpn.md")
    assert graph.downloads == [] and graph.graph_requests == []


async def test_a_file_without_its_place_is_not_read(graph: FakeGraph) -> None:
    """A file reference from before the check (a queued job) names no place: refused, not read."""
    access = GraphAccess(
        app_id=APP_ID, password=SECRET, tenant_id=None, login_url=graph.login_url, graph_url=graph.graph_url
    )
    fetcher = TeamsFileFetcher(hosts=FileHosts.parse(DEFAULT_TEAMS_FILE_HOSTS), graph=access)
    try:
        with pytest.raises(UserFacingError):
            file = shared_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), tenant=TENANT)
            await fetcher.fetch(file, max_bytes=1 << 20)
    finally:
        await fetcher.close()
    assert graph.graph_requests == [] and graph.lookups == []


_FOLDER = "https://contoso.sharepoint.com/sites/Team/Shared Documents/General"


@pytest.mark.parametrize(
    ("link", "ok"),
    [
        (f"{_FOLDER}/vpn.md", True),
        (f"{_FOLDER}/Sub folder/vpn.md", True),
        ("https://CONTOSO.sharepoint.com/sites/team/Shared%20Documents/General/vpn.md", True),
        (f"{_FOLDER}", False),
        (f"{_FOLDER}/", False),
        ("https://contoso.sharepoint.com/sites/Team/Shared Documents/General-HR/pay.md", False),
        ("https://contoso.sharepoint.com/sites/Team/Shared Documents/GeneralX.md", False),
        (f"{_FOLDER}/../../HR/Shared Documents/pay.md", False),
        (f"{_FOLDER}/%2e%2e/%2E%2E/pay.md", False),
        (f"{_FOLDER}/..%2f..%2fpay.md", False),
        (f"{_FOLDER}/a%5c..%5cpay.md", False),
        (f"{_FOLDER}//pay.md", False),
        ("https://contoso.sharepoint.com/sites/HR/x/../../Team/Shared Documents/General/pay.md", False),
        (f"{_FOLDER}/./pay.md", False),
        ("https://evil@contoso.sharepoint.com/sites/Team/Shared Documents/General/pay.md", False),
        ("https://contoso.sharepoint.com:443/sites/Team/Shared Documents/General/pay.md", False),
        ("http://contoso.sharepoint.com/sites/Team/Shared Documents/General/pay.md", False),
        ("https://contoso-my.sharepoint.com/sites/Team/Shared Documents/General/pay.md", False),
        (f"{_FOLDER}/Forms/AllItems.aspx?id=/sites/HR/Shared Documents/pay.md", False),
        (f"{_FOLDER}/pay.md#x", False),
        ("not a url", False),
    ],
)
def test_inside_the_folder(link: str, ok: bool) -> None:
    assert inside(link, _FOLDER) is ok


async def test_a_channel_file_named_like_the_posters_document_of_another_channel_is_refused(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, graph: FakeGraph, sign: Signer
) -> None:
    bot = await _bot(make_teams_bot, graph)
    await bot.post(
        channel_file("vpn.md", graph.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url),
        token=sign(),
    )
    b_secret = b"# VPN\n\nChannel B's VPN certificate passphrase is Zanzibar-42.\n"
    graph.channel_sites[OTHER_CHANNEL] = "B"  # channel B's files are in site B
    b_file = _in_other_channel(
        channel_file("vpn.md", graph.add_file("vpn.md", b_secret, site="B"), service_url=fake.service_url)
    )

    await bot.post(b_file, token=sign())
    b_reply = fake.activities(type="message")[-1].text
    await bot.post(
        channel_mention("What is the VPN certificate passphrase?", service_url=fake.service_url), token=sign()
    )
    in_a = _last(fake)

    assert CHANNEL not in b_reply and "a document you cannot see here" in b_reply
    assert "Zanzibar" not in in_a  # A's document is as it was


class _Slow(LocalServer):
    """Entra, Graph or a download host that takes its time: headers never come, or the body stalls."""

    def __init__(self, *, stall_body: bool) -> None:
        super().__init__()
        self._stall_body = stall_body

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._slow)

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        if not self._stall_body:
            await asyncio.sleep(30)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        await response.write(b"# Start\n")
        await asyncio.sleep(30)
        return response

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"


@pytest.mark.parametrize("where", ["entra", "graph", "download headers", "download body"])
async def test_a_timeout_anywhere_is_retryable_and_nothing_hangs(graph: FakeGraph, where: str) -> None:
    async with _Slow(stall_body=where == "download body") as slow:
        login = slow.base_url if where == "entra" else graph.login_url
        graph_url = slow.base_url if where == "graph" else graph.graph_url
        access = GraphAccess(
            app_id=APP_ID, password=SECRET, tenant_id=None, login_url=login, graph_url=graph_url, timeout=0.5
        )
        hosts = FileHosts.parse([*DEFAULT_TEAMS_FILE_HOSTS, graph.base_url, slow.base_url])
        fetcher = TeamsFileFetcher(hosts=hosts, graph=access, timeout=0.5)
        link = graph.add_file("vpn.md", VPN_GUIDE)
        if where.startswith("download"):
            graph.redirect(link, f"{slow.base_url}/download/vpn.md")
        try:
            async with asyncio.timeout(5):
                with pytest.raises(RetryableError):
                    await fetcher.fetch(
                        shared_file("vpn.md", link, tenant=TENANT, place=HERE), max_bytes=1 << 20
                    )
        finally:
            await fetcher.close()
