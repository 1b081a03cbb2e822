"""The semantic query cache in Redis, shared by every process that answers questions.

Same contract as `rag.cache.SemanticCache`. Per knowledge base four keys hold the cache of its
current generation: `gen` (which generation the entries belong to), `at` (a sorted set of entry ids
by the server time they were stored), `vec` (entry id -> the question vector as float32 bytes) and
`val` (entry id -> the encoded value). Storing under a new generation first drops the old entries,
so a changed knowledge base never serves an answer from before the change, whichever process
changed it. Similarity is computed here with numpy over the generation's live vectors; a vector never
changes once stored, so each process keeps those it has fetched and asks Redis only for the live ids
and the vectors it has not seen (sending every vector on every lookup kept Redis busy ~12 ms a lookup
at 1000 entries).

A cache must not take answering down with it: when Redis fails, `get` is a miss and `put` does
nothing (both logged). The client is a synchronous `redis.Redis`: the engine calls the cache from
worker threads.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar, cast

import numpy as np
import structlog
from redis import Redis
from redis.exceptions import RedisError

from rag.types import Answer, AnswerMode, Citation

log = structlog.get_logger(__name__)

V = TypeVar("V")

DEFAULT_PREFIX = "threadwise:"

# Lua helper: remove `ids` from the entry keys, in batches (unpack has a stack limit).
_REMOVE = """
local function remove(ids)
  for i = 1, #ids, 500 do
    local part = {unpack(ids, i, math.min(i + 499, #ids))}
    redis.call('ZREM', KEYS[2], unpack(part))
    redis.call('HDEL', KEYS[3], unpack(part))
    redis.call('HDEL', KEYS[4], unpack(part))
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: gen at vec val; ARGV: generation, id, vector, value, ttl seconds (0 = none), size.
_PUT = (
    _REMOVE
    + """
local ttl = tonumber(ARGV[5])
local size = tonumber(ARGV[6])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('SET', KEYS[1], ARGV[1])
end
if ttl > 0 then
  remove(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.17g', now - ttl)))
end
redis.call('ZADD', KEYS[2], string.format('%.17g', now), ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[4])
local extra = redis.call('ZCARD', KEYS[2]) - size
if extra > 0 then
  remove(redis.call('ZRANGE', KEYS[2], 0, extra - 1))
end
if ttl > 0 then
  for i = 1, 4 do
    redis.call('PEXPIRE', KEYS[i], math.ceil(ttl * 1000))
  end
end
"""
)

# KEYS: gen at; ARGV: generation, ttl seconds. Returns the ids of the live entries, oldest first
# ({} when the cache holds another generation). Ids only: vectors are fetched once per process.
_GET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {}
end
local ttl = tonumber(ARGV[2])
local ids
if ttl > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  ids = redis.call('ZRANGEBYSCORE', KEYS[2], string.format('%.17g', now - ttl), '+inf')
else
  ids = redis.call('ZRANGE', KEYS[2], 0, -1)
end
return ids
"""


class RedisQueryCache(Generic[V]):
    """Earlier answers found again by question similarity, per knowledge base, in Redis.

    A hit needs cosine similarity >= `threshold` with a live cached question of the same knowledge
    base and generation. Entries live `ttl` seconds (0 = until evicted); at most `size` per
    knowledge base, the oldest going first. Vectors must be L2-normalised.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        size: int,
        ttl: float,
        threshold: float,
        encode: Callable[[V], bytes],
        decode: Callable[[bytes], V],
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._redis = redis
        self._size = size
        self._ttl = ttl
        self._threshold = threshold
        self._encode = encode
        self._decode = decode
        self._prefix = f"{prefix}qcache:"
        self._put = redis.register_script(_PUT)
        self._get = redis.register_script(_GET)
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, dict[str, np.ndarray]]] = {}  # kb -> generation, id -> vector
        self.hits = 0
        self.misses = 0

    def get(self, kb: str, generation: str, vector: np.ndarray) -> V | None:
        try:
            value = self._lookup(kb, generation, vector)
        except RedisError as exc:
            log.warning("query_cache_unavailable", kb=kb, error=f"{type(exc).__name__}: {exc}"[:200])
            value = None
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def put(self, kb: str, generation: str, vector: np.ndarray, value: V) -> None:
        if self._size <= 0:
            return
        data = np.asarray(vector, dtype=np.float32).tobytes()
        args: list[bytes | str | int] = [
            generation,
            uuid.uuid4().hex[:16],
            data,
            self._encode(value),
            repr(float(self._ttl)),
            self._size,
        ]
        try:
            self._put(keys=self._keys(kb), args=args)
        except RedisError as exc:
            log.warning("query_cache_unavailable", kb=kb, error=f"{type(exc).__name__}: {exc}"[:200])

    def invalidate(self, kb: str) -> None:
        # Only frees memory early: entries of an older generation are never served anyway.
        with self._lock:
            self._seen.pop(kb, None)
        try:
            self._redis.delete(*self._keys(kb))
        except RedisError as exc:
            log.warning("query_cache_unavailable", kb=kb, error=f"{type(exc).__name__}: {exc}"[:200])

    def _keys(self, kb: str) -> list[str]:
        return [f"{self._prefix}{kb}:{part}" for part in ("gen", "at", "vec", "val")]

    def _lookup(self, kb: str, generation: str, vector: np.ndarray) -> V | None:
        keys = self._keys(kb)
        ids = [i.decode() for i in self._get(keys=keys[:2], args=[generation, repr(float(self._ttl))])]
        query = np.asarray(vector, dtype=np.float32)
        vectors = self._vectors(kb, generation, keys[2], ids, query.nbytes)
        live = [i for i in ids if i in vectors]
        if not live:
            return None
        sims = np.stack([vectors[i] for i in live]) @ query
        # The most similar at or above the threshold; among equals the newest, as SemanticCache.
        best = len(sims) - 1 - int(np.argmax(sims[::-1]))
        if not sims[best] >= self._threshold:
            return None
        raw = self._redis.hget(keys[3], live[best])
        if raw is None:  # dropped between the two calls (invalidated, expired, evicted)
            return None
        try:
            return self._decode(bytes(raw))  # type: ignore[arg-type]  # redis returns bytes here
        except (ValueError, KeyError, TypeError):
            log.warning("query_cache_undecodable", kb=kb)
            return None

    def _vectors(
        self, kb: str, generation: str, key: str, ids: list[str], nbytes: int
    ) -> dict[str, np.ndarray]:
        """The vectors of `ids`: those this process has, plus the others fetched from Redis."""
        with self._lock:
            seen_generation, seen = self._seen.get(kb, (generation, {}))
        known = dict(seen) if seen_generation == generation else {}
        missing = [i for i in ids if i not in known]
        for start in range(0, len(missing), 1000):
            part = missing[start : start + 1000]
            blobs = cast(list[bytes | None], self._redis.hmget(key, part))
            for entry_id, blob in zip(part, blobs, strict=True):
                if blob is not None and len(blob) == nbytes:  # another model's vectors never match
                    known[entry_id] = np.frombuffer(blob, dtype=np.float32)
        live = {i: known[i] for i in ids if i in known}  # forget what expired or was evicted
        with self._lock:
            self._seen[kb] = (generation, live)
        return live


def encode_answer(answer: Answer) -> bytes:
    """An Answer as JSON (never pickle: the cache is shared, its contents must not be code)."""
    return json.dumps(
        {
            "text": answer.text,
            "citations": [[c.number, c.document, c.locator, c.url, c.excerpt] for c in answer.citations],
            "mode": answer.mode,
            "language": answer.language,
        }
    ).encode()


def decode_answer(data: bytes) -> Answer:
    raw = json.loads(data)
    mode = raw["mode"]
    if mode not in ("llm", "extractive", "not_found"):
        raise ValueError(f"not an answer mode: {mode!r}")
    citations = tuple(_citation(*c) for c in raw["citations"])
    return Answer(str(raw["text"]), citations, cast(AnswerMode, mode), str(raw["language"]))


def _citation(number: int, document: str, locator: str, url: str | None, excerpt: str = "") -> Citation:
    """A citation as `encode_answer` wrote it (before excerpts were kept: four fields)."""
    return Citation(int(number), str(document), str(locator), url, str(excerpt))
