"""Microsoft Graph, as the bot uses it: to read the files people post in team channels and group chats.

What the docs say (Microsoft Learn, and microsoftgraph/microsoft-graph-docs-contrib, read for this):

- Teams' bot file API (`file.download.info` attachments with a pre-authenticated `downloadUrl`) works
  in personal chat only; for channels and group chats the docs point to Graph ("Send and receive files
  using bot"). A channel's files are stored in the team's SharePoint site, a group chat's in the
  sender's OneDrive.
- A file in a Teams message is an attachment with `contentType` `reference`, `contentUrl` the file's
  SharePoint link and `name` ("Working with Teams messaging APIs", file attachment); "the SharePoint URL
  is the link that opens the file; it is not the Microsoft Graph URL", and the shares API reads it.
- The link becomes a share id: base64 of the URL, unpadded base64url (`=` dropped, `/`→`_`, `+`→`-`),
  prefixed `u!` ("Access shared items", Encoding sharing URLs).
- `GET /shares/{id}/driveItem/content` answers `302 Found` with a pre-authenticated download URL,
  valid a few minutes, that needs no Authorization header ("Download the contents of a driveItem",
  which lists this path). Its least privileged application permission is Files.Read.All (Sites.Read.All
  and the ReadWrite ones also do), with admin consent. (`GET /shares/{id}` alone, the metadata, lists
  Files.ReadWrite.All: not called here.) Files.Read.All reaches any file in the tenant, so only
  SharePoint links (TEAMS_FILE_HOSTS) are sent, and only from messages that mention the bot.
- The app-only token: client-credentials grant at `{login}/{tenant}/oauth2/v2.0/token`, scope
  `{graph}/.default`, in the tenant the file was posted in: a multi-tenant app is consented per
  organisation, and each gives its own token.

Not confirmed by any captured activity: that Teams copies the `reference` attachment, link included,
into the activity the bot receives. Public reports (microsoft/botbuilder-dotnet#6710,
openclaw/openclaw#90733 and #101096) describe channel and group-chat activities that carry only the
text/html copy of the message, the file being only on Graph's copy of it. A reference without a
link gets a clear reply (text.SHARED_FILE_NO_LINK); a message with no reference at all looks like
one without a file, and the bot cannot tell a file was posted.
"""

from __future__ import annotations

import base64
import re

import aiohttp
from yarl import URL

from bot.teams.auth import ClientSecretCredentials
from rag.errors import RetryableError

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}")  # a GUID, or a domain such as contoso.com


class GraphUnavailable(Exception):
    """No app credentials (the Emulator's set-up, or a managed identity), or no tenant to ask."""


class GraphDenied(Exception):
    """Entra refused the app a Graph token in that tenant (a wrong secret, or no admin consent there)."""


def share_id(link: str) -> str:
    """The share id of a sharing link, as the shares API takes it: `u!` + unpadded base64url."""
    encoded = base64.urlsafe_b64encode(link.encode()).decode().rstrip("=")
    return f"u!{encoded}"


class GraphAccess:
    """The app's own (app-only) access to Graph: a token per tenant, and where a shared file is read.

    `tenant_id`: a single-tenant app's own tenant, used whatever the message says; None for a
    multi-tenant app, which asks the tenant each file was posted in.
    """

    def __init__(
        self,
        *,
        app_id: str | None,
        password: str | None,
        tenant_id: str | None,
        login_url: str,
        graph_url: str,
        timeout: float = 10.0,
    ) -> None:
        self._app_id = app_id or ""
        self._password = password or ""
        self._tenant_id = tenant_id or ""
        self._login_url = login_url
        self._graph_url = graph_url.rstrip("/")
        self._scope = f"{self._graph_url}/.default"
        self._timeout = timeout
        # One per organisation the bot serves: bounded by the tenants that installed the app.
        self._credentials: dict[str, ClientSecretCredentials] = {}

    @property
    def graph_url(self) -> str:
        return self._graph_url

    def content_url(self, link: str) -> URL:
        """Where Graph serves the bytes of the file at sharing `link` (a redirect to them)."""
        return URL(f"{self._graph_url}/v1.0/shares/{share_id(link)}/driveItem/content", encoded=True)

    async def token(self, tenant: str) -> str:
        """A Graph token for `tenant` (or the app's own, single-tenant). GraphUnavailable without
        credentials or tenant; GraphDenied when Entra refuses; RetryableError when it is out of reach."""
        credentials = self._for(tenant)
        try:
            return await credentials.token(self._scope)
        except PermissionError as exc:
            raise GraphDenied(str(exc)) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RetryableError(f"Entra token request failed: {type(exc).__name__}") from exc

    def forget(self, tenant: str) -> None:
        """Graph refused the token kept for `tenant`: fetch a new one next time."""
        found = self._credentials.get(self._tenant_id or tenant)
        if found is not None:
            found.forget(self._scope)

    def _for(self, tenant: str) -> ClientSecretCredentials:
        tenant = self._tenant_id or tenant
        if not (self._app_id and self._password):
            raise GraphUnavailable("no MICROSOFT_APP_ID / MICROSOFT_APP_PASSWORD to ask Entra with")
        if not _TENANT.fullmatch(tenant):
            raise GraphUnavailable(f"no usable tenant id ({tenant[:40]!r})")
        if tenant not in self._credentials:
            self._credentials[tenant] = ClientSecretCredentials(
                app_id=self._app_id,
                password=self._password,
                tenant_id=tenant,
                login_url=self._login_url,
                timeout=self._timeout,
            )
        return self._credentials[tenant]

    async def close(self) -> None:
        for credentials in self._credentials.values():
            await credentials.close()
