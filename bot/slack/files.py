"""Downloading a shared file from Slack: `url_private_download` with the bot token, streamed, capped."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import text
from bot.core.model import FileRef
from bot.slack.translate import file_ref
from rag import filetypes
from rag.errors import UserFacingError

log = structlog.get_logger(__name__)

CHUNK = 64 * 1024
HTML_TYPES = ("text/html", "application/xhtml+xml")


class SlackDownloadError(Exception):
    """The download went wrong on Slack's side or in the app's setup (logged; the user gets an apology)."""


class SlackFileFetcher:
    """The core's FileFetcher for Slack.

    The bot token is sent only to Slack's own hosts (and to the Web API host, which tests and proxies
    point elsewhere): a file URL in a payload must never make us hand the token to someone else.
    """

    def __init__(self, *, token: str, client: AsyncWebClient, api_url: str, timeout_s: float = 120.0) -> None:
        self._token = token
        self._client = client
        self._api_host = urlsplit(api_url).hostname or ""
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes:
        if not file.url:
            file = await self.describe(file)
        if not self._trusted(file.url):
            raise SlackDownloadError(f"refusing to send the bot token to {urlsplit(file.url).hostname!r}")
        headers = {"Authorization": f"Bearer {self._token}"}
        async with self._http().get(file.url, headers=headers) as response:
            if response.status != 200:
                raise SlackDownloadError(f"Slack answered HTTP {response.status} for {file.id or file.name}")
            content_type = response.content_type or ""
            if content_type in HTML_TYPES and not _is_html_document(file):
                # Without a valid token (or the files:read scope) Slack serves its login page, with 200.
                raise SlackDownloadError(
                    "Slack sent an HTML page instead of the file: "
                    "check SLACK_BOT_TOKEN and the files:read scope"
                )
            if response.content_length is not None and response.content_length > max_bytes:
                raise _too_large(file.name, max_bytes)
            return await _read_capped(response, file.name, max_bytes)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def describe(self, file: FileRef) -> FileRef:
        """A Slack Connect file comes as a bare id: files.info has its name and URLs."""
        try:
            info = await self._client.files_info(file=file.id)
        except SlackApiError as exc:
            raise SlackDownloadError(f"files.info failed: {exc.response.get('error')}") from None
        described = file_ref(info.get("file") or {})
        if described is None or not described.url:
            raise SlackDownloadError(f"files.info has no download URL for {file.id}")
        return described

    def _trusted(self, url: str) -> bool:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == self._api_host:
            return parts.scheme in ("https", "http")
        return parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session


async def _read_capped(response: aiohttp.ClientResponse, name: str, max_bytes: int) -> bytes:
    data = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        data.extend(chunk)
        if len(data) > max_bytes:
            raise _too_large(name, max_bytes)  # stop reading: the rest never reaches memory
    return bytes(data)


def _too_large(name: str, max_bytes: int) -> UserFacingError:
    return UserFacingError(text.FILE_TOO_LARGE.format(name=name, limit=filetypes.human_size(max_bytes)))


def _is_html_document(file: FileRef) -> bool:
    return file.mimetype in HTML_TYPES or file.name.lower().endswith((".html", ".htm"))
