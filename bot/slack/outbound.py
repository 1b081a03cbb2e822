"""Slack's outbound part: one Web API client, the reply sender and the file fetcher on it, and the
bot's own identity (auth.test, asked once). What `threadwise serve`, `worker` and `chat` share."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack import text as slack_text
from bot.slack.address import SlackAddress, SlackHandle
from bot.slack.connect import Organisation
from bot.slack.files import SlackFileFetcher
from bot.slack.sender import SlackSender
from bot.slack.translate import PLATFORM, BotIdentity
from rag.errors import ConfigError

AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}


class SlackOutbound:
    """Replies and downloads for Slack, on one shared AsyncWebClient (which retries 429s)."""

    name = PLATFORM
    ask_how = slack_text.ASK_HOW

    def __init__(
        self, *, bot_token: str, api_url: str, rate_limit_retries: int = 3, http_timeout_s: int = 30
    ) -> None:
        self.bot_token = bot_token
        self.client = AsyncWebClient(
            token=bot_token,
            base_url=api_url,
            timeout=http_timeout_s,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=2),
                AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),  # waits Retry-After
                AsyncServerErrorRetryHandler(max_retry_count=1),
            ],
        )
        self.files = SlackFileFetcher(token=bot_token, client=self.client, api_url=api_url)
        self.organisation = Organisation(client=self.client)
        self.sender = SlackSender(client=self.client)
        self.fetcher = self.files
        self._identity: BotIdentity | None = None
        self._identity_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackOutbound:
        if not settings.slack_bot_token:
            raise ConfigError("Slack needs SLACK_BOT_TOKEN (xoxb-…, Slack app > OAuth & Permissions)")
        return cls(bot_token=settings.slack_bot_token, api_url=settings.slack_api_url)

    def read_address(self, data: dict[str, Any]) -> SlackAddress:
        return SlackAddress.from_dict(data)

    def read_handle(self, data: dict[str, Any]) -> SlackHandle | None:
        return SlackHandle.from_dict(data)

    async def start(self) -> None:
        # One connection pool for every Web API call (Bolt's per-request clients share it too).
        self.client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def close(self) -> None:
        await self.files.close()
        if self.client.session is not None:
            await self.client.session.close()

    @property
    def known_identity(self) -> BotIdentity | None:
        return self._identity

    async def identity(self) -> BotIdentity:
        """Who the bot is (auth.test, once); ConfigError when Slack refuses the token."""
        async with self._identity_lock:
            if self._identity is None:
                try:
                    result = await self.client.auth_test()
                except SlackApiError as exc:
                    error = exc.response.get("error")
                    if error in AUTH_ERRORS:
                        raise ConfigError(
                            f"Slack refused SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth Token "
                            "(xoxb-…) from the Slack app's OAuth & Permissions page"
                        ) from None
                    raise
                self._identity = BotIdentity(
                    user_id=str(result["user_id"]),
                    bot_id=str(result.get("bot_id") or ""),
                    team_id=str(result.get("team_id") or ""),
                )
            return self._identity
