"""Teams as the platform table sees it: Bot Framework activities in, the Bot Connector out."""

from __future__ import annotations

from functools import partial

from bot.platform import Platform
from bot.teams.auth import DEFAULT_LOGIN_URL
from bot.teams.check import checks, describe
from bot.teams.outbound import AUTH_TIMEOUT_S, TeamsOutbound
from bot.teams.routes import TeamsRoutes


def teams(
    *, login_url: str = DEFAULT_LOGIN_URL, auth_timeout: float = AUTH_TIMEOUT_S
) -> Platform[TeamsOutbound]:
    """Teams with Entra's login endpoint and the request-authentication deadline (tests change both)."""
    return Platform(
        name="teams",
        outbound=partial(TeamsOutbound.from_settings, login_url=login_url, auth_timeout=auth_timeout),
        inbound=TeamsRoutes.from_settings,
        describe=describe,
        checks=partial(checks, login_url=login_url),
    )


PLATFORM = teams()
