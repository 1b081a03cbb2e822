"""Downloading a file a user attached in Teams personal chat, without becoming a proxy into our network.

The attachment (`application/vnd.microsoft.teams.file.download.info`) carries a pre-authenticated,
short-lived SharePoint `downloadUrl`: a plain GET with no bot token (PROTOCOL_NOTES §4). 401/403 mean the
link expired. The body is streamed and the download stops as soon as it passes the size limit, since
Teams does not say how big the file is.

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
from rag.errors import RetryableError, UserFacingError

log = structlog.get_logger(__name__)

_EXPIRED = {401, 403, 404, 410}
_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_HOPS = 5
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
    def __init__(self, *, hosts: FileHosts, timeout: float = 120.0) -> None:
        self._hosts = hosts
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=15)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes:
        if not file.url:
            raise UserFacingError(teams_text.FILE_LINK_EXPIRED.format(name=file.name))
        try:
            url = URL(file.url)
        except ValueError:
            raise _refused(file, None, "not a URL") from None
        session = self._open()
        try:
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
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                raise _refused(file, url, str(exc.os_error)) from None
            raise RetryableError(f"download failed: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"download failed: {type(exc).__name__}") from exc

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
