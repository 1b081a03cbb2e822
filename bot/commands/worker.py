"""`threadwise worker`: runs the jobs `threadwise serve` queued on REDIS_URL (RUNNER=queue)."""

from __future__ import annotations

import argparse

from bot.commands.base import SubParsers, add
from bot.settings import Settings
from rag.errors import ConfigError


def register(sub: SubParsers) -> None:
    add(sub, "worker", run, help="run queued jobs (RUNNER=queue: serve enqueues them on REDIS_URL)")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.compose import build_worker
    from bot.infra.worker import run_worker

    if not settings.redis_url:
        raise ConfigError("threadwise worker needs REDIS_URL: the Redis `threadwise serve` queues on")
    return await run_worker(build_worker(settings))  # the engine is built once arq has connected
