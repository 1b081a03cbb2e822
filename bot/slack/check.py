"""`threadwise check`'s Slack lines: the bot token (auth.test) and, with SLACK_APP_TOKEN, Socket Mode."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncSlackResponse, AsyncWebClient

from bot.platform import Check, Failed, Skipped, failure
from bot.settings import Settings
from bot.slack.outbound import AUTH_ERRORS

_TOKEN_PAGES = {
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page",
    "SLACK_APP_TOKEN": "an app-level token (xapp-…, scope connections:write) from Basic Information",
}


def checks(settings: Settings) -> Sequence[tuple[str, Check]]:
    return [("slack", lambda: _bot_token(settings)), ("slack socket mode", lambda: _socket_mode(settings))]


def describe(settings: Settings) -> str:
    return "slack (socket mode)" if settings.slack_app_token else "slack (http)"


async def _bot_token(settings: Settings) -> str:
    if not settings.slack_bot_token:
        raise Skipped("SLACK_BOT_TOKEN is not set: Slack is off")
    client = AsyncWebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=10)
    response = await _call(settings, client.auth_test(), "SLACK_BOT_TOKEN")
    bot = f"{response.get('user')} ({response.get('user_id')})"
    return f"auth.test: bot {bot} in {response.get('team')} ({response.get('team_id')})"


async def _socket_mode(settings: Settings) -> str:
    if not settings.slack_bot_token:
        raise Skipped("Slack is off")
    if not settings.slack_app_token:
        raise Skipped("SLACK_APP_TOKEN is not set: Slack sends events over HTTP to /slack/events")
    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=10)
    call = client.apps_connections_open(app_token=settings.slack_app_token)
    await _call(settings, call, "SLACK_APP_TOKEN")
    return "apps.connections.open: the app-level token can open a Socket Mode connection"


async def _call(settings: Settings, call: Awaitable[AsyncSlackResponse], variable: str) -> AsyncSlackResponse:
    try:
        return await call
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in AUTH_ERRORS:
            raise Failed(f"Slack refused {variable} ({error}): set it to {_TOKEN_PAGES[variable]}") from None
        raise Failed(f"Slack answered {error!r}: see https://api.slack.com/methods for the fix") from None
    except Exception as exc:  # aiohttp, DNS, TLS, refused connection
        raise Failed(
            f"cannot reach SLACK_API_URL={settings.slack_api_url} ({failure(exc)}): "
            "check the network, or correct SLACK_API_URL"
        ) from None
