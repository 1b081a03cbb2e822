"""A Teams attachment's `downloadUrl` is written by whoever sends the activity, and what it returns becomes
readable by asking the bot: it is fetched only from Teams' file hosts, over https, at public addresses,
with every redirect checked. Otherwise the user is told why, and nothing is fetched or ingested.

The fake Bot Connector's file server stands for SharePoint (its exact loopback origin is allowed, as only
a test may); a second fake on another port stands for an internal service the bot can reach.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.cli import main
from bot.core import text
from bot.settings import DEFAULT_TEAMS_FILE_HOSTS, load_settings
from bot.teams import text as teams_text
from bot.teams.files import is_public_address
from rag.errors import ConfigError
from tests.bot.teams.activities import personal_file_upload
from tests.bot.teams.conftest import KB, VPN_GUIDE, TeamsBotFactory
from tests.fakes.bot_connector import FakeBotConnector

SECRET = b"# Internal\n\nThe database root password is hunter2.\n"


@pytest.fixture
async def internal() -> AsyncIterator[FakeBotConnector]:
    """A service on the bot's own network (another port on 127.0.0.1) that must stay unreachable."""
    async with FakeBotConnector() as server:
        yield server


ATTACKS: dict[str, Callable[[FakeBotConnector, FakeBotConnector], str]] = {
    "loopback, another port": lambda fake, internal: internal.add_file("keys.md", SECRET),
    "localhost by name": lambda fake, internal: internal.add_file("keys.md", SECRET).replace(
        "127.0.0.1", "localhost"
    ),
    "redirect to loopback": lambda fake, internal: fake.add_redirect(internal.add_file("keys.md", SECRET)),
    "redirect to cloud metadata": lambda fake, internal: fake.add_redirect(
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    ),
    "redirect to a private address": lambda fake, internal: fake.add_redirect("https://10.0.0.7/keys.md"),
    "a host that is not Teams'": lambda fake, internal: "https://files.attacker.example/keys.md",
    "SharePoint over http": lambda fake, internal: "http://contoso.sharepoint.com/keys.md",
    "SharePoint on another port": lambda fake, internal: "https://contoso.sharepoint.com:8443/keys.md",
    "an IP address": lambda fake, internal: "https://192.0.2.10/keys.md",
    "credentials in the URL": lambda fake, internal: "https://x:y@contoso.sharepoint.com/keys.md",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_a_download_link_outside_teams_file_hosts_is_refused_and_nothing_is_ingested(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, internal: FakeBotConnector, attack: str
) -> None:
    bot = await make_teams_bot()
    url = ATTACKS[attack](fake, internal)

    await bot.post(personal_file_upload("keys.md", url, service_url=fake.service_url))

    reply = fake.activities(type="message")[-1]
    assert reply.text == "⚠️ " + teams_text.FILE_HOST_REFUSED.format(name="keys.md")
    assert internal.downloads == []
    assert await bot.engine.documents(KB) == []


async def test_an_allowed_host_name_that_resolves_to_loopback_is_refused(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    # Even a host the operator allowed is refused when its address is not public: here `localhost`
    # (a SharePoint name pointed at an internal address by DNS is refused the same way).
    bot = await make_teams_bot(teams_file_hosts=[*DEFAULT_TEAMS_FILE_HOSTS, "localhost"])

    await bot.post(personal_file_upload("keys.md", "https://localhost/keys.md", service_url=fake.service_url))

    reply = fake.activities(type="message")[-1]
    assert reply.text == "⚠️ " + teams_text.FILE_HOST_REFUSED.format(name="keys.md")
    assert await bot.engine.documents(KB) == []


async def test_a_redirect_to_the_file_host_is_followed(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()
    url = fake.add_redirect(fake.add_file("vpn.md", VPN_GUIDE))

    await bot.post(personal_file_upload("vpn.md", url, service_url=fake.service_url))

    assert len(fake.downloads) == 2  # the redirect, then the file
    assert fake.activities(type="message")[-1].text.startswith("✅ Added **vpn.md**")
    assert [d.name for d in await bot.engine.documents(KB)] == ["vpn.md"]


async def test_a_file_of_unknown_length_is_cut_off_at_the_size_limit_while_streaming(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(max_bytes=1024)
    url = fake.add_file("handbook.md", b"# Handbook\n\n" + b"All about us. " * 100_000, chunked=True)

    await bot.post(personal_file_upload("handbook.md", url, service_url=fake.service_url))

    reply = fake.activities(type="message")[-1]
    assert reply.text == "⚠️ " + text.FILE_TOO_LARGE.format(name="handbook.md", limit="1 KB")
    assert await bot.engine.documents(KB) == []


async def test_a_redirect_loop_is_refused(make_teams_bot: TeamsBotFactory, fake: FakeBotConnector) -> None:
    bot = await make_teams_bot()
    url = fake.add_redirect("")
    fake.retarget_redirect(url, url)

    await bot.post(personal_file_upload("vpn.md", url, service_url=fake.service_url))

    refused = teams_text.FILE_HOST_REFUSED.format(name="vpn.md")
    assert fake.activities(type="message")[-1].text == "⚠️ " + refused
    assert len(fake.downloads) == 6  # the first request and five redirects, then it stops


@pytest.mark.parametrize(
    "hosts",
    [
        "http://10.0.0.5:8080",
        "10.0.0.5",
        "*",
        "*.com",
        "http://localhost:8080",
        "https://contoso.sharepoint.com",
    ],
)
def test_file_hosts_that_could_reach_a_private_address_are_refused_at_start_up(
    clean_env: pytest.MonkeyPatch, hosts: str
) -> None:
    clean_env.setenv("TEAMS_FILE_HOSTS", hosts)

    with pytest.raises(ConfigError, match="TEAMS_FILE_HOSTS"):
        load_settings()


def test_production_refuses_the_test_only_loopback_origin(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    clean_env.setenv("MICROSOFT_APP_ID", "aabdbd62-bc97-4afb-83ee-575594577de5")
    clean_env.setenv("MICROSOFT_APP_PASSWORD", "fake-password")
    clean_env.setenv("TEAMS_FILE_HOSTS", "*.sharepoint.com,http://127.0.0.1:8080")

    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert "TEAMS_FILE_HOSTS" in error and "for tests only" in error


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("52.104.0.1", True),  # SharePoint Online
        ("2603:1036::1", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # AWS, GCP and Azure instance metadata
        ("100.100.100.200", False),  # Alibaba metadata (shared address space)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00:ec2::254", False),  # AWS metadata over IPv6
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ],
)
def test_which_resolved_addresses_count_as_public(address: str, public: bool) -> None:
    # The resolver's rule, for addresses a test cannot make a host name resolve to without its own DNS.
    assert is_public_address(address) is public
