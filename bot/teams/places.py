"""Whose file a channel or group-chat link is: a file is read only from the place's own file storage.

The app's Graph token (Files.Read.All) reads any file in the tenant, and the link is whatever the message
says. So before the download the link must lie inside the storage of the place it was posted in:

- a team channel's files folder, `GET /v1.0/teams/{team's Entra group id}/channels/{channel id}/filesFolder`
  (a driveItem; its `webUrl` is the folder; private and shared channels have a site of their own, which
  this names). Docs ("Get filesFolder"): least privileged application permission Files.Read.All, the one
  the download already needs. The team's Entra group id comes from the activity's channelData
  (`team.aadGroupId`) when Teams sends it, else from the Bot Connector, `GET {serviceUrl}/v3/teams/{teamId}`
  (TeamDetails.aadGroupId), with the bot's own Bot Framework token;
- a group chat's file, in its sender's OneDrive: `GET /v1.0/users/{sender's aadObjectId}/drive`, its
  `webUrl`. Docs ("Get Drive", OneDrive API): application permission Files.Read.All.

"Inside": same scheme and host (host case-insensitive), no user info, no port, no query or fragment, no
`.`/`..` segments or backslashes, and the link's decoded path under the folder's at a segment boundary
(`/General/` does not take `/General-HR/`). Paths compare case-insensitively, as SharePoint's do.

Each place's folder is kept a few minutes per (tenant, place), in this object (one per Teams outbound).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import aiohttp
import structlog
from yarl import URL

from bot.core.model import FileRef
from bot.teams import text as teams_text
from bot.teams.graph import GraphAccess
from rag.errors import RetryableError, UserFacingError

log = structlog.get_logger(__name__)

FOLDER_TTL_S = 300.0
_MAX_ENTRIES = 4096
_FIX = (
    "grant the bot's app the Microsoft Graph application permission Files.Read.All, with admin consent "
    "in this tenant (README: Teams setup)"
)


@dataclass(frozen=True)
class Place:
    """Where a Graph-read file was posted: a team channel (its team, and the team's Entra group id when
    Teams said it) or a group chat (its sender)."""

    kind: Literal["channel", "chat"]
    team: str = ""  # Teams' team id (19:…@thread.tacv2), for the Bot Connector
    group: str = ""  # the team's Entra (AAD) group id, for Graph
    channel: str = ""  # the channel's id (19:…@thread.tacv2)
    user: str = ""  # the sender's Entra object id
    service_url: str = ""  # the Bot Connector that sent the message

    def encode(self) -> str:
        return urlencode({k: v for k, v in asdict(self).items() if v})

    @classmethod
    def decode(cls, text: str) -> Place | None:
        fields = dict(parse_qsl(text))
        kind = fields.pop("kind", "")
        if kind not in ("channel", "chat") or set(fields) - {
            "team",
            "group",
            "channel",
            "user",
            "service_url",
        }:
            return None
        return cls(kind="channel" if kind == "channel" else "chat", **fields)


class _LookupFailed(Exception):
    def __init__(self, status: int, what: str) -> None:
        super().__init__(f"{what} answered HTTP {status}")
        self.status = status
        self.what = what


def inside(link: str, folder: str) -> bool:
    """Whether `link` names something under `folder` (see the module docstring). The link is read as
    written (no normalisation): it goes to Graph as written."""
    try:
        url, base = urlsplit(link), urlsplit(folder)
        ports = (url.port, base.port)
    except ValueError:
        return False
    if not url.scheme or url.scheme.lower() != base.scheme.lower() or ports != (None, None):
        return False
    if not url.hostname or url.hostname != base.hostname:  # hostname: lower-cased
        return False
    if any(u.username is not None or u.password is not None for u in (url, base)):
        return False
    if url.query or url.fragment or "?" in link or "#" in link or "\\" in unquote(url.path):
        return False
    path, root = _segments(url.path), _segments(base.path)
    if path is None or root is None or not root:
        return False
    return len(path) > len(root) and path[: len(root)] == root


def _segments(raw_path: str) -> list[str] | None:
    """The decoded, case-folded segments of a path; None when one is `.` or `..`, holds an encoded `/`,
    or is empty (a `//`): a server may read those otherwise."""
    trimmed = raw_path.removeprefix("/").removesuffix("/")
    if not trimmed:
        return []
    decoded = [unquote(p) for p in trimmed.split("/")]
    if any(d in ("", ".", "..") or "/" in d for d in decoded):
        return None
    return [d.casefold() for d in decoded]


class PlaceFolders:
    """Looks up (and keeps a few minutes) each place's own file storage, and checks links against it."""

    def __init__(
        self,
        *,
        graph: GraphAccess,
        connector_token: Callable[[], Awaitable[str]] | None = None,
        ttl: float = FOLDER_TTL_S,
    ) -> None:
        self._graph = graph
        self._connector_token = connector_token
        self._ttl = ttl
        self._kept: dict[tuple[str, ...], tuple[str, float]] = {}

    async def check(
        self, session: aiohttp.ClientSession, file: FileRef, place: Place | None, tenant: str, token: str
    ) -> None:
        """UserFacingError unless `file.url` lies in `place`'s own storage; RetryableError when a lookup
        cannot be made now."""
        if place is None:
            raise _not_here(file, "no place recorded with the file")
        try:
            folder = await self._folder(session, place, tenant, token)
        except _LookupFailed as exc:
            raise self._failure(exc, file, tenant) from None
        if not inside(file.url, folder):
            raise _not_here(file, "the link is outside the place's own files")

    def _failure(self, exc: _LookupFailed, file: FileRef, tenant: str) -> Exception:
        if exc.status in (401, 403) and exc.what == "graph":
            if exc.status == 401:
                self._graph.forget(tenant)
            log.error("teams_graph_refused", status=exc.status, tenant=tenant, lookup=True, fix=_FIX)
            return UserFacingError(teams_text.GRAPH_FORBIDDEN.format(name=file.name))
        if exc.status == 429 or exc.status >= 500:
            return RetryableError(str(exc))
        return _not_here(file, str(exc))

    async def _folder(self, session: aiohttp.ClientSession, place: Place, tenant: str, token: str) -> str:
        graph = self._graph.graph_url
        key: tuple[str, ...]
        if place.kind == "chat":
            if not place.user:
                raise _LookupFailed(404, "no sender")
            key = (tenant, "user", place.user)
            url = f"{graph}/v1.0/users/{_seg(place.user)}/drive"
        else:
            group = place.group or await self._team_group(session, place, tenant)
            if not (group and place.channel):
                raise _LookupFailed(404, "no team or channel")
            key = (tenant, "channel", group, place.channel)
            url = f"{graph}/v1.0/teams/{_seg(group)}/channels/{_seg(place.channel)}/filesFolder"
        kept = self._kept_value(key)
        if kept is not None:
            return kept
        web_url = await _get_field(session, url, token, "webUrl", what="graph")
        self._keep(key, web_url)
        return web_url

    async def _team_group(self, session: aiohttp.ClientSession, place: Place, tenant: str) -> str:
        """The team's Entra group id, from the Bot Connector (TeamDetails.aadGroupId)."""
        if not (place.team and place.service_url and self._connector_token is not None):
            raise _LookupFailed(404, "no team id to look up")
        key = (tenant, "team", place.team)
        kept = self._kept_value(key)
        if kept is not None:
            return kept
        try:
            token = await self._connector_token()
        except PermissionError:
            raise _LookupFailed(403, "bot connector") from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RetryableError(f"Bot Framework token request failed: {type(exc).__name__}") from exc
        url = f"{place.service_url.rstrip('/')}/v3/teams/{_seg(place.team)}"
        group = await _get_field(session, url, token, "aadGroupId", what="bot connector")
        self._keep(key, group)
        return group

    def _kept_value(self, key: tuple[str, ...]) -> str | None:
        found = self._kept.get(key)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def _keep(self, key: tuple[str, ...], value: str) -> None:
        if len(self._kept) >= _MAX_ENTRIES:
            now = time.monotonic()
            self._kept = {k: v for k, v in self._kept.items() if v[1] >= now}
            while len(self._kept) >= _MAX_ENTRIES:
                self._kept.pop(next(iter(self._kept)))
        self._kept[key] = (value, time.monotonic() + self._ttl)


async def _get_field(session: aiohttp.ClientSession, url: str, token: str, field: str, *, what: str) -> str:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with session.get(URL(url, encoded=True), headers=headers, allow_redirects=False) as response:
        if response.status != 200:
            raise _LookupFailed(response.status, what)
        try:
            body = await response.json(content_type=None)
        except ValueError:
            raise _LookupFailed(502, what) from None
    value = body.get(field) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise _LookupFailed(404, what)
    return value


def _seg(value: str) -> str:
    return quote(value, safe="")


def _not_here(file: FileRef, reason: str) -> UserFacingError:
    log.warning("teams_file_not_the_places", reason=reason)
    return UserFacingError(teams_text.SHARED_FILE_NOT_HERE.format(name=file.name))
