"""Downloading a file a user attached in Teams personal chat.

The attachment (`application/vnd.microsoft.teams.file.download.info`) carries a pre-authenticated,
short-lived SharePoint `downloadUrl`: a plain GET with no bot token (PROTOCOL_NOTES §4). 401/403 mean the
link expired. The body is streamed and the download stops as soon as it passes the size limit, since
Teams does not say how big the file is.
"""

from __future__ import annotations

import aiohttp

from bot.core import text
from bot.core.model import FileRef
from rag.errors import RetryableError, UserFacingError
from rag.filetypes import human_size

_EXPIRED = {401, 403, 404, 410}
_CHUNK = 64 * 1024


class TeamsFileFetcher:
    def __init__(self, *, timeout: float = 120.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=15)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes:
        if not file.url:
            raise UserFacingError(text.FILE_LINK_EXPIRED.format(name=file.name))
        session = self._open()
        try:
            # No Authorization header: the URL carries its own (tempauth); a token must not go to SharePoint.
            async with session.get(file.url) as response:
                if response.status in _EXPIRED:
                    raise UserFacingError(text.FILE_LINK_EXPIRED.format(name=file.name))
                if response.status == 429 or response.status >= 500:
                    raise RetryableError(f"download answered HTTP {response.status}")
                if response.status != 200:
                    refused = text.FILE_DOWNLOAD_REFUSED.format(name=file.name, status=response.status)
                    raise UserFacingError(refused)
                if response.content_length is not None and response.content_length > max_bytes:
                    raise _too_large(file, max_bytes)
                data = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise _too_large(file, max_bytes)
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"download failed: {type(exc).__name__}") from exc

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (a worker process builds its fetcher before one).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _too_large(file: FileRef, max_bytes: int) -> UserFacingError:
    return UserFacingError(text.FILE_TOO_LARGE.format(name=file.name, limit=human_size(max_bytes)))
