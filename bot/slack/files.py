"""Downloading a shared file from Slack: `url_private_download` with the bot token, streamed, capped.
Failures follow the FileFetcher contract (bot/core/ports.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.files import CHUNK, read_capped
from bot.core.model import FileRef
from bot.slack.translate import file_ref
from rag.errors import RetryableError

log = structlog.get_logger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")


class SlackDownloadError(Exception):
    """The app's set-up or a payload is wrong, not the file or the network (logged; the user gets an
    apology): a token Slack answers with its login page, a file URL on a host not Slack's."""


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
        try:
            if not file.url:
                file = await self.describe(file)
            if not self._trusted(file.url):
                raise SlackDownloadError(f"refusing to send the bot token to {urlsplit(file.url).hostname!r}")
            headers = {"Authorization": f"Bearer {self._token}"}
            async with self._http().get(file.url, headers=headers) as response:
                _check(response, file)
                chunks = response.content.iter_chunked(CHUNK)
                return await read_capped(
                    chunks, name=file.name, max_bytes=max_bytes, declared=response.content_length
                )
        except (aiohttp.ClientError, TimeoutError) as exc:  # the network's fault: a queue retries
            raise RetryableError(f"download failed: {type(exc).__name__}") from exc

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


def _check(response: aiohttp.ClientResponse, file: FileRef) -> None:
    if response.status == 429 or response.status >= 500:
        raise RetryableError(f"Slack answered HTTP {response.status}")
    if response.status != 200:
        raise SlackDownloadError(f"Slack answered HTTP {response.status} for {file.id or file.name}")
    if (response.content_type or "") in HTML_TYPES and not _is_html_document(file):
        # Without a valid token (or the files:read scope) Slack serves its login page, with 200.
        raise SlackDownloadError(
            "Slack sent an HTML page instead of the file: check SLACK_BOT_TOKEN and the files:read scope"
        )


def _is_html_document(file: FileRef) -> bool:
    return file.mimetype in HTML_TYPES or file.name.lower().endswith((".html", ".htm"))
