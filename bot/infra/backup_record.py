"""When the last backup succeeded, for the alert on missing backups, where no running process sees the
archives: with CHROMA_HOST, `threadwise backup` runs as a job of its own (a CronJob, a Container Apps
job) and writes them to a volume of its own. It notes its success in Redis; every serve and worker
exports that time at /metrics (threadwise_backup_last_success_timestamp_seconds).
"""

from __future__ import annotations

from datetime import datetime

from redis.asyncio import Redis

from bot.infra.redis_state import DEFAULT_PREFIX

KEY = f"{DEFAULT_PREFIX}backup:last_success"  # Unix time, never expires: the newest success wins


async def note_backup(redis_url: str, taken_at: datetime) -> None:
    """Record a successful backup (raises RedisError when Redis does not answer)."""
    async with Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=5) as redis:
        await redis.set(KEY, str(taken_at.timestamp()))


class RedisBackupRecord:
    """What `note_backup` recorded, read at scrape time."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def last_success(self) -> float | None:
        value = await self._redis.get(KEY)
        return float(value) if value is not None else None
