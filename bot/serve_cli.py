"""`threadwise serve`: the chat app behind the aiohttp service, with whichever platforms are configured."""

from __future__ import annotations

from bot.compose import build_chat_app
from bot.metrics import Metrics
from bot.platform import Platform
from bot.server import build_app, serve
from bot.settings import Settings
from rag.engine import Engine
from rag.errors import ConfigError


def configured_platforms(settings: Settings) -> list[Platform]:
    platforms: list[Platform] = []
    if settings.slack_bot_token:
        from bot.slack.platform import SlackPlatform

        platforms.append(SlackPlatform.from_settings(settings))
    if settings.teams_enabled:
        from bot.teams.platform import TeamsPlatform

        platforms.append(TeamsPlatform.from_settings(settings))
    return platforms


def require_credentials(settings: Settings, platforms: list[Platform]) -> None:
    """ENVIRONMENT=production refuses to serve without an authenticated platform to serve."""
    if settings.environment == "production" and not platforms:
        raise ConfigError(
            "ENVIRONMENT=production needs credentials: set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD "
            "(Teams), or SLACK_BOT_TOKEN with SLACK_SIGNING_SECRET or SLACK_APP_TOKEN (Slack)."
        )


async def run_serve(settings: Settings, engine: Engine, *, metrics: Metrics | None = None) -> int:
    platforms = configured_platforms(settings)
    require_credentials(settings, platforms)
    chat = build_chat_app(
        settings,
        engine,
        senders={p.name: p.sender for p in platforms},
        fetchers={p.name: p.fetcher for p in platforms},
        metrics=metrics,
    )
    app = build_app(
        engine=engine,
        chat=chat,
        check_timeout=settings.health_check_timeout,
        runs_jobs=settings.runner == "inprocess",
    )
    for platform in platforms:
        platform.mount(app, chat)
    from bot.scheduler import attach_backups

    attach_backups(app, settings=settings, engine=engine)  # embedded store only
    await serve(
        app, host=settings.host, port=settings.port, header_timeout=settings.http_header_timeout_seconds
    )
    return 0
