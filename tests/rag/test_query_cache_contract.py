"""One contract, two homes: the same assertions on the in-memory SemanticCache and the RedisQueryCache.

Vectors are built with a chosen cosine similarity to each other, so the threshold is tested exactly.
In memory time is a clock the test moves; in Redis it is the server's, so the test really waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import redis

from rag.cache import QueryCache, SemanticCache
from rag.redis_cache import RedisQueryCache, decode_answer, encode_answer
from rag.types import Answer, Citation
from tests.conftest import EngineFactory
from tests.fakes.groq_server import FakeGroq
from tests.redisdb import delete_prefix, sync_client, unique_prefix

DIM = 384
KB = "slack-T1"


def _answer(n: int) -> Answer:
    cites = (
        Citation(1, "vpn.md", "p. 2, Certificates", "https://files.example/vpn.md"),
        Citation(2, "it.md", ""),
    )
    return Answer(f"Answer {n}: every 90 days [1][2].", cites, "llm", "en")


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _at_similarity(base: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector whose cosine similarity with `base` is `cos`."""
    other = _unit(seed)
    other = other - float(other @ base) * base
    other /= np.linalg.norm(other)
    v = cos * base + np.sqrt(1 - cos**2) * other
    return (v / np.linalg.norm(v)).astype(np.float32)


@dataclass
class Home:
    make: Callable[..., QueryCache[Answer]]  # size=, ttl=, threshold=
    advance: Callable[[float], None]  # let `seconds` pass


@pytest.fixture(params=["memory", "redis"])
def home(request: pytest.FixtureRequest) -> Iterator[Home]:
    if request.param == "memory":
        now = [1000.0]

        def move(seconds: float) -> None:
            now[0] += seconds

        yield Home(make=lambda **kw: SemanticCache[Answer](clock=lambda: now[0], **kw), advance=move)
        return
    client = sync_client()
    prefix = unique_prefix()

    def make(**kw: float) -> QueryCache[Answer]:
        return RedisQueryCache[Answer](
            client, prefix=prefix, encode=encode_answer, decode=decode_answer, **kw
        )

    yield Home(make=make, advance=time.sleep)
    client.close()
    delete_prefix(prefix)


def test_the_same_question_hits_and_an_unseen_one_misses(home: Home) -> None:
    cache = home.make(size=10, ttl=0, threshold=0.95)
    q = _unit(1)
    assert cache.get(KB, "g1", q) is None
    cache.put(KB, "g1", q, _answer(1))
    assert cache.get(KB, "g1", q) == _answer(1)  # citations and all
    assert cache.get(KB, "g1", _unit(2)) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_hit_needs_the_similarity_threshold(home: Home) -> None:
    cache = home.make(size=10, ttl=0, threshold=0.95)
    q = _unit(1)
    cache.put(KB, "g1", q, _answer(1))
    assert cache.get(KB, "g1", _at_similarity(q, 0.97, seed=5)) == _answer(1)
    assert cache.get(KB, "g1", _at_similarity(q, 0.93, seed=5)) is None


def test_the_most_similar_cached_question_answers(home: Home) -> None:
    cache = home.make(size=10, ttl=0, threshold=0.9)
    q = _unit(1)
    cache.put(KB, "g1", _at_similarity(q, 0.92, seed=7), _answer(1))
    cache.put(KB, "g1", _at_similarity(q, 0.99, seed=8), _answer(2))
    cache.put(KB, "g1", _at_similarity(q, 0.95, seed=9), _answer(3))
    assert cache.get(KB, "g1", q) == _answer(2)


def test_knowledge_bases_do_not_share_answers(home: Home) -> None:
    cache = home.make(size=10, ttl=0, threshold=0.95)
    q = _unit(1)
    cache.put(KB, "g1", q, _answer(1))
    assert cache.get("slack-T2", "g1", q) is None


def test_a_new_generation_of_the_knowledge_base_empties_its_cache(home: Home) -> None:
    cache = home.make(size=10, ttl=0, threshold=0.95)
    old, new = _unit(1), _unit(2)
    cache.put(KB, "g1", old, _answer(1))
    cache.put("slack-T2", "g1", old, _answer(9))
    assert cache.get(KB, "g2", old) is None  # the documents changed: the old answer may be wrong
    cache.put(KB, "g2", new, _answer(2))
    assert cache.get(KB, "g2", new) == _answer(2)
    assert cache.get(KB, "g2", old) is None
    assert cache.get("slack-T2", "g1", old) == _answer(9)


def test_invalidate_empties_one_knowledge_base(home: Home) -> None:
    cache = home.make(size=10, ttl=0, threshold=0.95)
    q = _unit(1)
    cache.put(KB, "g1", q, _answer(1))
    cache.put("slack-T2", "g1", q, _answer(2))
    cache.invalidate(KB)
    assert cache.get(KB, "g1", q) is None
    assert cache.get("slack-T2", "g1", q) == _answer(2)


def test_entries_expire_after_the_ttl(home: Home) -> None:
    cache = home.make(size=10, ttl=0.3, threshold=0.95)
    first, second = _unit(1), _unit(2)
    cache.put(KB, "g1", first, _answer(1))
    home.advance(0.2)
    cache.put(KB, "g1", second, _answer(2))
    assert cache.get(KB, "g1", first) == _answer(1)
    home.advance(0.15)  # first is 0.35 s old, second 0.15 s
    assert cache.get(KB, "g1", first) is None
    assert cache.get(KB, "g1", second) == _answer(2)


def test_each_knowledge_base_keeps_at_most_size_entries_the_oldest_going_first(home: Home) -> None:
    cache = home.make(size=2, ttl=0, threshold=0.95)
    vectors = [_unit(i) for i in range(3)]
    for i, v in enumerate(vectors):
        cache.put(KB, "g1", v, _answer(i))
        home.advance(0.002)
    assert [cache.get(KB, "g1", v) for v in vectors] == [None, _answer(1), _answer(2)]


def test_size_zero_caches_nothing(home: Home) -> None:
    cache = home.make(size=0, ttl=0, threshold=0.95)
    cache.put(KB, "g1", _unit(1), _answer(1))
    assert cache.get(KB, "g1", _unit(1)) is None


# -- Redis only ----------------------------------------------------------------------------------


def test_without_redis_the_cache_misses_instead_of_failing_the_question() -> None:
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    cache = RedisQueryCache[Answer](
        down, size=10, ttl=0, threshold=0.95, encode=encode_answer, decode=decode_answer
    )
    cache.put(KB, "g1", _unit(1), _answer(1))
    cache.invalidate(KB)
    assert cache.get(KB, "g1", _unit(1)) is None
    assert cache.misses == 1


async def test_an_answer_cached_by_one_process_is_served_by_another_until_the_kb_changes(
    make_engine: EngineFactory,
) -> None:
    from rag.answer import ExtractiveAnswerer, GroqAnswerer

    vpn = b"# VPN\n\nThe VPN client certificate expires every 90 days. Renew it from the portal.\n"
    question = "How often does the VPN certificate expire?"
    prefix = unique_prefix()
    clients = [sync_client(), sync_client()]  # two processes, two connection pools
    try:
        async with FakeGroq() as fake:
            fake.enqueue_answer("Every 90 days [1].")
            fake.enqueue_answer("Every 30 days [1].")
            answerer = GroqAnswerer(
                api_key="k",
                model="m",
                base_url=fake.base_url,
                timeout_s=5,
                max_retries=0,
                fallback=ExtractiveAnswerer(reason="unavailable"),
            )
            a = make_engine(answerer=answerer, query_cache=_redis_cache(clients[0], prefix))
            b = make_engine(answerer=answerer, query_cache=_redis_cache(clients[1], prefix))
            await a.ingest(KB, "vpn.md", vpn)

            first = await a.ask(KB, question)
            again = await b.ask(KB, question)
            assert again.cached and not first.cached
            assert again.text == first.text == "Every 90 days [1]." and again.citations == first.citations
            assert len(fake.requests) == 1

            await b.ingest(KB, "vpn.md", vpn.replace(b"90 days", b"30 days"))
            changed = await a.ask(KB, question)
            assert changed.text == "Every 30 days [1]." and not changed.cached
            assert len(fake.requests) == 2
            await answerer.aclose()
    finally:
        for client in clients:
            client.close()
        delete_prefix(prefix)


def _redis_cache(client: redis.Redis, prefix: str) -> RedisQueryCache[Answer]:
    return RedisQueryCache[Answer](
        client, prefix=prefix, size=100, ttl=3600, threshold=0.95, encode=encode_answer, decode=decode_answer
    )
