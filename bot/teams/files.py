"""Downloading the files people share with the bot in Teams, without becoming a proxy into our network.

In personal chat, the attachment (`application/vnd.microsoft.teams.file.download.info`) carries a
pre-authenticated, short-lived SharePoint `downloadUrl`: a plain GET with no bot token (PROTOCOL_NOTES
§4). 401/403 mean the link expired. The body is streamed and the download stops as soon as it passes the
size limit, since Teams does not say how big the file is.

In a team channel or group chat, the attachment is a `reference` to the file's SharePoint (or OneDrive)
link, which is sent to Microsoft Graph with the app's own token (bot/teams/graph.py: what the docs say);
Graph answers with a redirect to a pre-authenticated download link, fetched as above. The token goes to
GRAPH_API_URL only, never to a download host; only links into TEAMS_FILE_HOSTS are sent to Graph (it
could read any file in the tenant), and only once the link is found inside the place's own files (the
channel's files folder, a group chat sender's OneDrive: bot/teams/places.py); Graph's 401/403 mean the
app lacks its permission, 404 the file is gone.

The URL is written by whoever sent the activity, and what it returns becomes readable by asking the bot,
so it is fetched only when it is Teams' file storage: https on port 443 to a host in TEAMS_FILE_HOSTS
(SharePoint's domains by default), resolved to public addresses only — the resolver refuses loopback,
private, link-local (cloud metadata) and other non-global addresses, and the connection goes to the
addresses it checked, so a name that changes its answer between check and connect (DNS rebinding) gains
nothing. Redirects are followed here, one hop at a time, each hop checked the same way.

For tests (a fake file server on 127.0.0.1), TEAMS_FILE_HOSTS may name an exact loopback origin such as
`http://127.0.0.1:8080`; Settings refuses that with ENVIRONMENT=production, and no other entry can reach a
loopback or private address.
"""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from bot.core.files import CHUNK, read_capped
from bot.core.model import FileRef
from bot.hosts import FileHosts
from bot.teams import text as teams_text
from bot.teams.graph import GraphAccess, GraphDenied, GraphUnavailable
from bot.teams.places import PlaceFolders
from bot.teams.translate import graph_place, graph_tenant
from rag.errors import RetryableError, UserFacingError

log = structlog.get_logger(__name__)

_EXPIRED = {401, 403, 404, 410}
_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_HOPS = 5
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GRAPH_FIX = (
    "grant the bot's app the Microsoft Graph application permission Files.Read.All, with admin consent "
    "in this tenant (README: Teams setup)"
)


# -- where a download may connect -------------------------------------------------------------


def is_public_address(address: str) -> bool:
    """A globally routable unicast address, looking through IPv4-mapped, NAT64 and 6to4 IPv6 forms."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    return ip.is_global and not ip.is_multicast


class BlockedAddress(OSError):
    """A file host resolved to an address the bot must not connect to."""


class PublicAddressResolver(AbstractResolver):
    """DNS as usual, but a name with any non-public address is refused: the connector then connects only
    to the addresses returned here, the ones that were checked."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        private = [r["host"] for r in results if not is_public_address(r["host"])]
        if private or not results:
            raise BlockedAddress(f"{host} resolves to a non-public address ({', '.join(private[:3])})")
        return results

    async def close(self) -> None:
        await self._inner.close()


# -- the download ---------------------------------------------------------------------------------


class TeamsFileFetcher:
    """Reads the files people share with the bot in Teams: a personal chat's from its pre-authenticated
    download link, a team channel's or group chat's through Graph (bot/teams/graph.py), then from the
    download link Graph redirects to. Either way every download hop is checked as the module says."""

    def __init__(
        self,
        *,
        hosts: FileHosts,
        graph: GraphAccess | None = None,
        places: PlaceFolders | None = None,
        timeout: float = 120.0,
    ) -> None:
        self._hosts = hosts
        self._graph = graph
        # Whose files a link may name (bot/teams/places.py): without a Bot Connector, a channel's team
        # is found only when the activity named its Entra group.
        self._places = places or (PlaceFolders(graph=graph) if graph is not None else None)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=15)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes:
        tenant = graph_tenant(file)
        no_link = teams_text.FILE_LINK_EXPIRED if tenant is None else teams_text.SHARED_FILE_NO_LINK
        if not file.url:
            raise UserFacingError(no_link.format(name=file.name))
        try:
            url = URL(file.url)
        except ValueError:
            raise _refused(file, None, "not a URL") from None
        try:
            if tenant is not None:
                return await self._through_graph(file, url, tenant, max_bytes)
            return await self._download(url, file, max_bytes)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                raise _refused(file, url, str(exc.os_error)) from None
            raise RetryableError(f"download failed: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"download failed: {type(exc).__name__}") from exc

    async def _download(self, url: URL, file: FileRef, max_bytes: int) -> bytes:
        session = self._open()
        for _ in range(_MAX_HOPS + 1):
            reason = self._hosts.refusal(url)
            if reason:
                raise _refused(file, url, reason)
            # No Authorization header: the URL carries its own (tempauth); a token must not go to
            # SharePoint. Redirects are ours to follow, so each hop is checked.
            async with session.get(url, allow_redirects=False) as response:
                if response.status not in _REDIRECTS:
                    return await _body(response, file, max_bytes)
                url = _next_hop(url, response, file)
        raise _refused(file, url, f"more than {_MAX_HOPS} redirects")

    async def _through_graph(self, file: FileRef, link: URL, tenant: str, max_bytes: int) -> bytes:
        """Ask Graph for the file at its sharing link with the app's token, then download it from where
        Graph redirects (a pre-authenticated link: no token goes there)."""
        # Graph would read any file in the tenant for us: only links into Teams' file storage are asked.
        reason = self._hosts.refusal(link)
        if reason:
            raise _refused(file, link, reason)
        graph = self._graph
        if graph is None:
            raise UserFacingError(teams_text.GRAPH_NOT_SET_UP.format(name=file.name))
        token = await _graph_token(graph, file, tenant)
        # The token reads any file in the tenant: only the place's own files are read (places.py).
        if self._places is not None:
            await self._places.check(self._open(), file, graph_place(file), tenant, token)
        url = graph.content_url(file.url)  # the link exactly as Teams wrote it: that is what is shared
        headers = {"Authorization": f"Bearer {token}"}
        async with self._open().get(url, headers=headers, allow_redirects=False) as response:
            if response.status == 200:  # the bytes themselves, without a redirect
                return await _body(response, file, max_bytes)
            if response.status not in _REDIRECTS:
                raise _graph_refusal(graph, response.status, file, tenant)
            target = _next_hop(url, response, file)
        return await self._download(target, file, max_bytes)

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (a worker process builds its fetcher before one).
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=PublicAddressResolver())
            # No cookie jar: nothing one host sets may travel to the next hop.
            jar = aiohttp.DummyCookieJar()
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector, cookie_jar=jar)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._graph is not None:
            await self._graph.close()


async def _graph_token(graph: GraphAccess, file: FileRef, tenant: str) -> str:
    try:
        return await graph.token(tenant)
    except GraphUnavailable as exc:
        log.warning("teams_graph_unavailable", reason=str(exc))
        raise UserFacingError(teams_text.GRAPH_NOT_SET_UP.format(name=file.name)) from None
    except GraphDenied as exc:
        log.error("teams_graph_token_refused", tenant=tenant, reason=str(exc), fix=_GRAPH_FIX)
        raise UserFacingError(teams_text.GRAPH_FORBIDDEN.format(name=file.name)) from None


def _graph_refusal(graph: GraphAccess, status: int, file: FileRef, tenant: str) -> Exception:
    """What Graph's refusal to serve a shared file means for the user (or the retrying runner)."""
    if status in (401, 403):
        if status == 401:
            graph.forget(tenant)  # a token Graph no longer takes: the next try fetches a new one
        log.error("teams_graph_refused", status=status, tenant=tenant, fix=_GRAPH_FIX)
        return UserFacingError(teams_text.GRAPH_FORBIDDEN.format(name=file.name))
    if status in (404, 410):
        return UserFacingError(teams_text.SHARED_FILE_GONE.format(name=file.name))
    if status == 429 or status >= 500:
        return RetryableError(f"Graph answered HTTP {status}")
    return UserFacingError(teams_text.FILE_DOWNLOAD_REFUSED.format(name=file.name, status=status))


async def _body(response: aiohttp.ClientResponse, file: FileRef, max_bytes: int) -> bytes:
    if response.status in _EXPIRED:
        raise UserFacingError(teams_text.FILE_LINK_EXPIRED.format(name=file.name))
    if response.status == 429 or response.status >= 500:
        raise RetryableError(f"download answered HTTP {response.status}")
    if response.status != 200:
        raise UserFacingError(teams_text.FILE_DOWNLOAD_REFUSED.format(name=file.name, status=response.status))
    chunks = response.content.iter_chunked(CHUNK)
    return await read_capped(chunks, name=file.name, max_bytes=max_bytes, declared=response.content_length)


def _next_hop(url: URL, response: aiohttp.ClientResponse, file: FileRef) -> URL:
    location = response.headers.get("Location", "")
    if not location:
        raise UserFacingError(teams_text.FILE_DOWNLOAD_REFUSED.format(name=file.name, status=response.status))
    try:
        return url.join(URL(location))
    except ValueError:
        raise _refused(file, url, "a redirect to something that is not a URL") from None


def _refused(file: FileRef, url: URL | None, reason: str) -> UserFacingError:
    # The host only: the rest of a download URL is a credential (tempauth).
    log.warning("teams_download_refused", host=url.host if url is not None else None, reason=reason)
    return UserFacingError(teams_text.FILE_HOST_REFUSED.format(name=file.name))
