"""Teams' outbound part: Bot Framework credentials, botbuilder's CloudAdapter, the reply sender and
the file fetcher (with the app's Microsoft Graph access, for files posted in channels). The routes
(bot/teams/routes.py) authenticate requests with the same guard."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botframework.connector.auth import AuthenticationConstants

from bot.hosts import FileHosts
from bot.settings import DEFAULT_GRAPH_API_URL, DEFAULT_TEAMS_FILE_HOSTS, Settings
from bot.teams import text as teams_text
from bot.teams.address import TeamsAddress, TeamsHandle
from bot.teams.auth import DEFAULT_LOGIN_URL, ClientSecretCredentials, GuardedAuthentication
from bot.teams.files import TeamsFileFetcher
from bot.teams.graph import GraphAccess
from bot.teams.places import PlaceFolders
from bot.teams.sender import TeamsSender
from bot.teams.translate import PLATFORM

AUTH_TIMEOUT_S = 10.0  # Teams gives a bot about 15 s to answer a request


class TeamsOutbound:
    """Replies through the Bot Connector and downloads from Teams' file storage.

    Without an app id nothing is authenticated: that is for the Bot Framework Emulator on this
    machine (the routes then accept only a loopback serviceUrl).
    """

    name = PLATFORM
    ask_how = teams_text.ASK_HOW

    def __init__(
        self,
        *,
        app_id: str | None,
        app_password: str | None,
        app_type: str = "MultiTenant",
        tenant_id: str | None = None,
        login_url: str = DEFAULT_LOGIN_URL,
        auth_timeout: float = AUTH_TIMEOUT_S,
        file_hosts: Sequence[str] = DEFAULT_TEAMS_FILE_HOSTS,
        graph_url: str = DEFAULT_GRAPH_API_URL,
    ) -> None:
        self.authenticated = bool(app_id)
        self._credentials = ClientSecretCredentials(
            app_id=app_id,
            password=app_password,
            tenant_id=tenant_id if app_type == "SingleTenant" else None,
            login_url=login_url,
        )
        factory: Any = self._credentials
        if app_type == "UserAssignedMSI":
            # A managed identity has no secret; botbuilder's factory gets its token (MSAL, blocking).
            config = SimpleNamespace(APP_ID=app_id, APP_TYPE=app_type, APP_TENANTID=tenant_id)
            factory = ConfigurationServiceClientCredentialFactory(config)
        inner = ConfigurationBotFrameworkAuthentication(SimpleNamespace(), credentials_factory=factory)
        self.auth = GuardedAuthentication(inner, enabled=self.authenticated, timeout=auth_timeout)
        self.adapter = CloudAdapter(self.auth)
        # Files posted in channels and group chats are read through Graph, with a token of the app's
        # own from the tenant each was posted in (or the single-tenant app's own tenant).
        graph = GraphAccess(
            app_id=app_id,
            password=app_password,
            tenant_id=tenant_id if app_type == "SingleTenant" else None,
            login_url=login_url,
            graph_url=graph_url,
        )
        # A channel's team is named to Graph by its Entra group id, asked of the Bot Connector when the
        # activity does not carry it; each place's own files are kept a few minutes, here.
        places = PlaceFolders(graph=graph, connector_token=self._connector_token)
        self.fetcher = TeamsFileFetcher(hosts=FileHosts.parse(file_hosts), graph=graph, places=places)
        self.sender = TeamsSender(self.adapter, app_id=app_id)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> TeamsOutbound:
        """`options`: login_url and auth_timeout (tests point them at a fake)."""
        return cls(
            app_id=settings.microsoft_app_id,
            app_password=settings.microsoft_app_password,
            app_type=settings.microsoft_app_type,
            tenant_id=settings.microsoft_app_tenant_id,
            file_hosts=settings.teams_file_hosts,
            graph_url=settings.graph_api_url,
            **options,
        )

    async def _connector_token(self) -> str:
        """The bot's own token for the Bot Connector (what the replies go with)."""
        return await self._credentials.token(AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE)

    def read_address(self, data: dict[str, Any]) -> TeamsAddress:
        return TeamsAddress.from_dict(data)

    def read_handle(self, data: dict[str, Any]) -> TeamsHandle | None:
        return TeamsHandle.from_dict(data)

    async def start(self) -> None:
        """Every reply goes through the adapter: nothing to open."""

    async def close(self) -> None:
        await self.fetcher.close()
        await self._credentials.close()
        self.auth.close()
