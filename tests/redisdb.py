"""The Redis the tests that are about Redis use: 127.0.0.1:6379 (`make test` starts one when none
answers there), database 9, every test under its own key prefix, deleted afterwards."""

from __future__ import annotations

import uuid

import redis

REDIS_URL = "redis://127.0.0.1:6379/9"


def unique_prefix() -> str:
    return f"twtest:{uuid.uuid4().hex[:12]}:"


def sync_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(
            f"no Redis at {REDIS_URL} ({exc}): these tests need one. `make test` starts redis-server "
            "(.ci/with-redis); by hand: redis-server --port 6379 --save ''"
        ) from None
    return client


def delete_prefix(prefix: str) -> None:
    client = sync_client()
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
