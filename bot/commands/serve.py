"""`threadwise serve`: the chat app behind the aiohttp service, with whichever platforms are configured."""

from __future__ import annotations

import argparse

from bot.commands.base import SubParsers, add
from bot.platforms import enabled_platforms
from bot.settings import Settings
from rag.errors import ConfigError


def register(sub: SubParsers) -> None:
    add(sub, "serve", run, help="run the HTTP service (platform routes, /health, /ready, /metrics)")


def require_credentials(settings: Settings) -> None:
    """ENVIRONMENT=production refuses to serve without an authenticated platform to serve."""
    if settings.environment == "production" and not enabled_platforms(settings):
        raise ConfigError(
            "ENVIRONMENT=production needs credentials: set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD "
            "(Teams), or SLACK_BOT_TOKEN with SLACK_SIGNING_SECRET or SLACK_APP_TOKEN (Slack)."
        )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import CollectorRegistry

    from bot.compose import build_engine, build_service
    from bot.infra.backup_record import RedisBackupRecord
    from bot.infra.metrics import Metrics
    from bot.infra.scheduler import attach_backups
    from bot.server import serve

    require_credentials(settings)
    metrics = Metrics(registry=CollectorRegistry())  # this process's, exported at /metrics
    engine = build_engine(settings, stage_observer=metrics.stage, failure_observer=metrics.stage_failed)
    await engine.sweep()
    service = build_service(settings, engine, metrics=metrics)
    backups = attach_backups(service.app, settings=settings, engine=engine)  # embedded store only
    if backups is not None:
        metrics.watch_backups(backups.last_success)
    elif service.chat.redis is not None:  # a Chroma server's backups run apart and note them in Redis
        metrics.watch_backups(RedisBackupRecord(service.chat.redis).last_success)
    await serve(
        service.app,
        host=settings.host,
        port=settings.port,
        header_timeout=settings.http_header_timeout_seconds,
    )
    return 0
