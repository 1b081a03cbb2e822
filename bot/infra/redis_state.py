"""The dispatcher's shared state in Redis, so every `threadwise serve` replica agrees.

Same interfaces as `bot.core.state` (Deduplicator, RateLimiter, ThreadMemory) and
`bot.core.feedback.FeedbackBook` and `bot.core.choices.Choices`, with the
same behaviour; each operation is one atomic Redis command or Lua script, so concurrent replicas never
interleave a read and a write. Time comes from the Redis server (`TIME`), never from the replicas'
clocks. The client is built in the composition root and shared; keys start with `prefix`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from redis.asyncio import Redis

from bot.core.choices import KEEP_S, PendingUpload
from bot.core.feedback import VOTE_TTL_S, AnswerNote, Vote, VoteRecord
from rag.types import Turn

DEFAULT_PREFIX = "threadwise:"

# A token bucket per key, stored as a hash {tokens, stamp}. Returns the seconds to wait as a string
# (Lua numbers come back from Redis truncated to integers). The key expires once the bucket would be
# full again anyway, so idle users cost nothing.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(saved[1]) or burst
local stamp = tonumber(saved[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'stamp', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.17g', wait)
"""

# Append turns to a thread's list, then drop the oldest while the texts exceed the character budget
# (keeping at least one turn). Each item is "<characters>:<role>:<text>": Lua counts bytes, not
# characters, so the count Python made travels with the item.
_APPEND = """
for i = 3, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local sizes = {}
local total = 0
for i = 1, #items do
  sizes[i] = tonumber(string.match(items[i], '^(%d+):'))
  total = total + sizes[i]
end
local budget = tonumber(ARGV[1])
local drop = 0
while #items - drop > 1 and total > budget do
  drop = drop + 1
  total = total - sizes[drop]
end
if drop > 0 then
  redis.call('LTRIM', KEYS[1], drop, -1)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


# Keep the new vote record (the reason given before kept when the same vote comes again without
# one: bot.core.feedback.merged) and return the one it replaces, in one step; index it by time.
# A previous value that is not a JSON object (the bare "up" or "down" the version before kept, under
# the same key) has no reason to keep: it is replaced as it is.
_CAST = """
local previous = redis.call('GET', KEYS[1])
local record = ARGV[1]
if previous then
  local readable, old = pcall(cjson.decode, previous)
  if readable and type(old) == 'table' then
    local new = cjson.decode(record)
    if old['vote'] == new['vote'] then
      if new['reason'] == '' then new['reason'] = old['reason'] end
      if new['comment'] == '' then new['comment'] = old['comment'] end
      record = cjson.encode(new)
    end
  end
end
redis.call('SET', KEYS[1], record, 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
return previous
"""


class RedisDeduplicator:
    """`first_time` is one `SET key NX PX`: of any number of concurrent callers exactly one wins."""

    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, ttl: float = 3600.0) -> None:
        self._redis = redis
        self._prefix = f"{prefix}dedup:"
        self._ttl_ms = max(1, int(ttl * 1000))

    async def first_time(self, key: str) -> bool:
        return bool(await self._redis.set(self._prefix + key, b"1", nx=True, px=self._ttl_ms))


class RedisRateLimiter:
    """A token bucket per user, as MemoryRateLimiter: `burst` at once, refilled at `per_minute`."""

    def __init__(self, redis: Redis, *, per_minute: int, burst: int, prefix: str = DEFAULT_PREFIX) -> None:
        self._rate = per_minute / 60.0
        self._burst = burst
        self._prefix = f"{prefix}rate:"
        self._script = redis.register_script(_ACQUIRE)

    async def acquire(self, user: str) -> float:
        wait = await self._script(keys=[self._prefix + user], args=[repr(self._rate), self._burst])
        return float(wait)


class RedisFeedbackBook:
    """Votes and answer notes, each kept `ttl` seconds: a click replayed to any replica finds its
    vote, and `threadwise feedback` reads them from anywhere. Times are the recording process's."""

    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, ttl: float = VOTE_TTL_S) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        self._ttl_ms = max(1, int(ttl * 1000))
        self._script = redis.register_script(_CAST)

    async def note(self, platform: str, refs: Sequence[str], note: AnswerNote) -> None:
        text = json.dumps(asdict(note))
        async with self._redis.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.set(f"{self._prefix}note:{platform}:{ref}", text, px=self._ttl_ms)
            await pipe.execute()

    async def noted(self, platform: str, ref: str) -> AnswerNote | None:
        found = await self._redis.get(f"{self._prefix}note:{platform}:{ref}")
        return AnswerNote.from_dict(json.loads(found)) if found else None

    async def cast(self, record: VoteRecord) -> VoteRecord | None:
        keys = [f"{self._prefix}vote:{record.key}", f"{self._prefix}votes"]
        cutoff = record.at - self._ttl
        args: list[bytes | str | int | float] = [
            _lua_json(record.to_dict()),
            self._ttl_ms,
            record.at,
            record.key,
            cutoff,
        ]
        previous = await self._script(keys=keys, args=args)
        if not previous:
            return None
        if previous in (b"up", b"down"):  # as the version before kept a vote: the vote alone
            vote: Vote = "up" if previous == b"up" else "down"
            return replace(record, vote=vote, reason="", comment="", note=None)
        return VoteRecord.from_dict(json.loads(previous))

    async def votes(self, *, since: float, kb: str | None = None) -> list[VoteRecord]:
        keys = await self._redis.zrevrangebyscore(f"{self._prefix}votes", "+inf", repr(since))
        if not keys:
            return []
        found = await self._redis.mget([f"{self._prefix}vote:{k.decode()}" for k in keys])
        records = [VoteRecord.from_dict(json.loads(v)) for v in found if v]
        return [r for r in records if kb is None or r.kb == kb]


def _lua_json(data: dict[str, Any]) -> bytes:
    """JSON that the scripts' cjson decodes: UTF-8 as it is, since cjson refuses a \\ud800-style escape
    of a lone surrogate (half an emoji, which a platform's JSON can carry): that becomes "?"."""
    return json.dumps(data, ensure_ascii=False).encode("utf-8", "replace")


class RedisThreadMemory:
    """The last turns of each thread as a Redis list, trimmed to a character budget like
    MemoryThreadMemory. A thread nobody adds to for `ttl` seconds is forgotten (memory instead keeps
    the most recent threads)."""

    def __init__(
        self,
        redis: Redis,
        *,
        max_chars: int = 6000,
        ttl: float = 7 * 86400.0,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._redis = redis
        self._max_chars = max_chars
        self._ttl_ms = max(1, math.ceil(ttl * 1000))
        self._prefix = f"{prefix}thread:"
        self._append = redis.register_script(_APPEND)

    async def history(self, thread: str) -> list[Turn]:
        items = await self._redis.lrange(self._prefix + thread, 0, -1)  # type: ignore[misc]  # stubs: sync|async
        return [_decode_turn(item) for item in items]

    async def known(self, thread: str) -> bool:
        return bool(await self._redis.exists(self._prefix + thread))

    async def append(self, thread: str, *turns: Turn) -> None:
        if not turns:
            return
        encoded = [f"{len(t.text)}:{t.role}:{t.text}".encode() for t in turns]
        await self._append(keys=[self._prefix + thread], args=[self._max_chars, self._ttl_ms, *encoded])


def _decode_turn(item: bytes) -> Turn:
    _, role, text = item.decode().split(":", 2)
    if role == "user":
        return Turn("user", text)
    if role == "assistant":
        return Turn("assistant", text)
    raise ValueError(f"not a turn role: {role!r}")


# Each key named whose value is ARGV[1] is deleted, and its index (1-based) returned: a document's
# wait for an upload's default, taken by one caller only.
_CLAIM = """
local taken = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    taken[#taken + 1] = i
  end
end
return taken
"""


class RedisChoices:
    """Uploads offered a choice of scope (bot/core/choices.py), and when each one's default is due:
    every replica and worker sees the same ones, and `due` gives each to one caller (ZREM's answer).
    When one is due is the Unix time of the process that kept it (clocks kept by NTP: minutes matter
    here, not milliseconds). Each waiting document names the upload whose default it waits for."""

    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, keep: float = KEEP_S) -> None:
        self._redis = redis
        self._prefix = f"{prefix}choice:"
        self._due_key = f"{prefix}choices-due"
        self._waiting = f"{prefix}choice-waiting:"
        self._keep_ms = int(keep * 1000)
        self._claim = redis.register_script(_CLAIM)

    def _waits(self, upload: PendingUpload, name: str) -> str:
        return f"{self._waiting}{upload.kb}\n{upload.user}\n{name}"

    async def keep(self, upload: PendingUpload, *, due: float | None) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._prefix + upload.key, upload.dumps(), px=self._keep_ms)
            if due is not None:
                pipe.zadd(self._due_key, {upload.key: due})
            for name in upload.waiting:
                pipe.set(self._waits(upload, name), upload.key, px=self._keep_ms)
            await pipe.execute()

    async def get(self, key: str) -> PendingUpload | None:
        raw = await self._redis.get(self._prefix + key)
        return PendingUpload.loads(raw) if raw is not None else None

    async def settle(self, upload: PendingUpload) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._due_key, upload.key)
            for name in upload.names:
                pipe.delete(self._waits(upload, name))
            await pipe.execute()

    async def due(self, now: float) -> list[PendingUpload]:
        keys = await self._redis.zrangebyscore(self._due_key, "-inf", repr(now))
        taken = []
        for key in keys:
            if await self._redis.zrem(self._due_key, key):  # 1 for one caller only
                upload = await self.get(key.decode())
                if upload is not None:
                    taken.append(upload)
        return taken

    async def claim(self, upload: PendingUpload) -> tuple[str, ...]:
        if not upload.waiting:
            return ()
        keys = [self._waits(upload, n) for n in upload.waiting]
        taken = await self._claim(keys=keys, args=[upload.key])
        return tuple(upload.waiting[int(i) - 1] for i in taken)
