"""A local stand-in for the Microsoft cloud a Teams bot reads channel files from.

A real aiohttp server on 127.0.0.1 (ephemeral port) playing three parts:

- Entra's token endpoint (`{login_url}/{tenant}/oauth2/v2.0/token`, client-credentials grant): it
  issues a token for whatever scope is asked (the Bot Connector's and Graph's) and records each request;
  `refuse_tokens` refuses every token in a tenant, as Entra does where no admin consented to the app;
- Microsoft Graph's `GET /v1.0/shares/{u!<base64url of the sharing URL>}/driveItem/content`, which
  needs a token issued for `{graph_url}/.default` in the file's tenant and answers `302 Found` with a
  pre-authenticated download URL (docs: "Download the contents of a driveItem", "Access shared items");
  `forbid` answers 403 as Graph does for an app without Files.Read.All, `delete` 404, `redirect`
  sends the download elsewhere;
- Graph's `GET /v1.0/teams/{group}/channels/{channel}/filesFolder` (the channel's files folder: the
  `General` folder of a site, `channel_sites` naming the site of each channel, "Engineering" unless
  told) and `GET /v1.0/users/{id}/drive` (that user's OneDrive), both for the same token; each call
  recorded in `lookups`, and `forbid_lookups` refuses them;
- SharePoint's download host (`/download/…?tempauth=…`), recording each request's headers so a test can
  check that no token went there.

    async with FakeGraph(tenant=TENANT) as graph:
        link = graph.add_file("vpn.md", data)   # the SharePoint link a `reference` attachment carries
        ...
        assert graph.downloads[0].get("authorization") is None
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.fakes.bot_connector import TEAM_GROUP, stream_body
from tests.fakes.local_server import LocalServer

SECRET = "fake-password"  # the client secret the tests' bots use


@dataclass
class _Shared:
    name: str
    data: bytes
    key: str
    chunked: bool = False
    status: int = 302  # what the shares call answers: 302 to the download, or an error
    location: str | None = None  # where the 302 goes instead of the fake's download host


class FakeGraph(LocalServer):
    """See the module docstring."""

    def __init__(self, *, tenant: str) -> None:
        super().__init__()
        self.tenant = tenant
        self.token_requests: list[dict[str, str]] = []  # the form of each token request, and its tenant
        self.graph_requests: list[dict[str, str]] = []  # path and headers of each Graph call
        self.downloads: list[dict[str, str]] = []  # headers of each download
        self._files: dict[str, _Shared] = {}  # SharePoint link → file
        self._tokens: dict[str, tuple[str, str]] = {}  # token → (tenant, scope)
        self._ids = itertools.count(1)
        self._refusal: tuple[int, str] | None = None
        self._unconsented: set[str] = set()
        self._token_failure: tuple[int, str] | None = None
        self.team_group = TEAM_GROUP  # the only team whose channels filesFolder knows
        self.channel_sites: dict[str, str] = {}  # channel id → its files' site ("Engineering" if absent)
        self.lookups: list[str] = []  # the path of each filesFolder / drive call
        self._lookup_refusal: int | None = None

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeGraph is not started; use `async with FakeGraph()`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def login_url(self) -> str:
        return self.base_url

    @property
    def graph_url(self) -> str:
        return self.base_url

    @property
    def graph_token_requests(self) -> list[dict[str, str]]:
        return [r for r in self.token_requests if r.get("scope") == f"{self.graph_url}/.default"]

    # -- scripting ---------------------------------------------------------------------------------

    def add_file(
        self,
        name: str,
        data: bytes,
        *,
        site: str = "Engineering",
        folder: str = "General",
        owner: str | None = None,
        chunked: bool = False,
    ) -> str:
        """Store a file in a team's SharePoint site (in `folder`, a channel's), or in `owner`'s OneDrive
        (a group chat's file); returns its link, as a `reference` attachment's `contentUrl` carries it
        (spaces and all, as Graph's chatMessage examples show it)."""
        link = f"https://contoso.sharepoint.com/sites/{site}/Shared Documents/{folder}/{name}"
        if owner is not None:
            link = f"{_onedrive(owner)}/Microsoft Teams Chat Files/{name}"
        self._files[link] = _Shared(name, data, f"{next(self._ids)}-{quote(name)}", chunked=chunked)
        return link

    def refuse_tokens(self, tenant: str) -> None:
        """Entra refuses this app any token in `tenant` (no admin there consented to it)."""
        self._unconsented.add(tenant)

    def fail_tokens(self, status: int, body: str = "") -> None:
        """Entra's token endpoint fails for every request: `status` with `body` (JSON or not)."""
        self._token_failure = (status, body)

    def forbid(self, status: int = 403, code: str = "accessDenied") -> None:
        """Every shares call is refused (the app lacks Files.Read.All, or it was never consented)."""
        self._refusal = (status, code)

    def forbid_lookups(self, status: int = 403) -> None:
        """Every filesFolder and drive call answers `status` (403: the app lacks the permission)."""
        self._lookup_refusal = status

    def delete(self, link: str) -> None:
        """The file is gone (deleted or moved since it was shared): Graph answers 404."""
        self._files[link].status = 404

    def redirect(self, link: str, location: str, *, status: int = 302) -> None:
        """The shares call sends the download to `location` instead of the fake's download host."""
        self._files[link].location = location
        self._files[link].status = status

    # -- lifecycle ---------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1.0/shares/{share}/driveItem/content", self._content)
        app.router.add_get("/v1.0/teams/{group}/channels/{channel}/filesFolder", self._files_folder)
        app.router.add_get("/v1.0/users/{user}/drive", self._drive)
        app.router.add_get("/download/{key}", self._download)

    # -- handlers ----------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        tenant = request.match_info["tenant"]
        self.token_requests.append({**form, "tenant": tenant})
        if self._token_failure is not None and form.get("scope") == f"{self.graph_url}/.default":
            status, body = self._token_failure
            return web.Response(status=status, text=body, content_type="application/json")
        if form.get("grant_type") != "client_credentials" or form.get("client_secret") != SECRET:
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"},
                status=401,
            )
        if tenant in self._unconsented:
            return web.json_response(
                {
                    "error": "unauthorized_client",
                    "error_description": "AADSTS700016: Application was not found in the directory.",
                },
                status=400,
            )
        token = f"fake-entra-token-{len(self.token_requests)}"
        self._tokens[token] = (tenant, form.get("scope", ""))
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": token})

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and self._tokens.get(token) == (self.tenant, f"{self.graph_url}/.default")

    def _lookup_error(self, request: web.Request) -> web.Response | None:
        self.lookups.append(request.path)
        if not self._authorized(request):
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if self._lookup_refusal is not None:
            return _error(self._lookup_refusal, "accessDenied", "Missing role permissions on the request.")
        return None

    async def _files_folder(self, request: web.Request) -> web.Response:
        error = self._lookup_error(request)
        if error is not None:
            return error
        if request.match_info["group"] != self.team_group:
            return _error(404, "NotFound", "No team found with Group Id.")
        site = self.channel_sites.get(request.match_info["channel"], "Engineering")
        url = f"https://contoso.sharepoint.com/sites/{site}/Shared Documents/General"
        return web.json_response(
            {"id": "01ABC", "name": "General", "webUrl": url, "folder": {"childCount": 1}}
        )

    async def _drive(self, request: web.Request) -> web.Response:
        error = self._lookup_error(request)
        if error is not None:
            return error
        url = _onedrive(request.match_info["user"])
        return web.json_response({"id": "b!drive", "driveType": "business", "webUrl": url})

    async def _content(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.graph_requests.append({"path": request.path, **headers})
        if not self._authorized(request):
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if self._refusal is not None:
            return _error(*self._refusal, "Either scp or roles claim need to be present in the token.")
        shared = self._files.get(_sharing_url(request.match_info["share"]))
        if shared is None or shared.status == 404:
            return _error(404, "itemNotFound", "The resource could not be found.")
        if shared.status not in (301, 302, 303, 307, 308):
            return _error(shared.status, "generalException", "An error occurred.")
        location = shared.location or f"{self.base_url}/download/{shared.key}?tempauth=fake-{shared.key}"
        return web.Response(status=shared.status, headers={"Location": location})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self.downloads.append({k.lower(): v for k, v in request.headers.items()})
        found = next((f for f in self._files.values() if f.key == request.match_info["key"]), None)
        if found is None or request.query.get("tempauth") != f"fake-{found.key}":
            return web.Response(status=401, text="<error>tempauth expired</error>")
        if found.chunked:
            return await stream_body(request, found.data)
        return web.Response(body=found.data, content_type="application/octet-stream")


def _onedrive(user: str) -> str:
    """A user's OneDrive for Business, as its drive's webUrl names it."""
    return f"https://contoso-my.sharepoint.com/personal/{user.replace('-', '_')}/Documents"


def _sharing_url(share_id: str) -> str:
    """The sharing URL a share id encodes: `u!` and the URL in unpadded base64url (docs: "Encoding
    sharing URLs"). Anything else decodes to "" (no such file)."""
    if not share_id.startswith("u!"):
        return ""
    encoded = share_id[2:]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def _error(status: int, code: str, message: str) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status)
