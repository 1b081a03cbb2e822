"""One contract, two homes: the same assertions on the in-memory and the Redis dedup, rate limiter and
thread memory. In memory, time is a clock the test moves; in Redis it is the server's, so the test
really waits (tenths of a second)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.core import text
from bot.core.choices import Choices, MemoryChoices, PendingUpload
from bot.core.dispatch import Dispatcher
from bot.core.model import Address, Handle, Incoming, Job, Reply, Update, Working
from bot.core.state import (
    Deduplicator,
    MemoryDeduplicator,
    MemoryRateLimiter,
    MemoryThreadMemory,
    RateLimiter,
    ThreadMemory,
)
from bot.infra.redis_state import RedisChoices, RedisDeduplicator, RedisRateLimiter, RedisThreadMemory
from rag.types import Turn
from tests.bot.doubles import Outlet, Place, Shown
from tests.redisdb import REDIS_URL, delete_prefix, sync_client, unique_prefix


@dataclass
class Backend:
    dedup: Callable[..., Deduplicator]
    limiter: Callable[..., RateLimiter]
    memory: Callable[..., ThreadMemory]
    choices: Callable[..., Choices]
    advance: Callable[[float], Any]  # async: let `seconds` pass


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        now = [1000.0]

        async def move(seconds: float) -> None:
            now[0] += seconds

        def clock() -> float:
            return now[0]

        yield Backend(
            dedup=lambda **kw: MemoryDeduplicator(clock=clock, **kw),
            limiter=lambda **kw: MemoryRateLimiter(clock=clock, **kw),
            memory=lambda **kw: MemoryThreadMemory(**kw),
            choices=lambda **kw: MemoryChoices(**kw),
            advance=move,
        )
        return
    sync_client().close()  # a clear message when no Redis answers
    prefix = unique_prefix()
    client = aioredis.Redis.from_url(REDIS_URL)
    yield Backend(
        dedup=lambda **kw: RedisDeduplicator(client, prefix=prefix, **kw),
        limiter=lambda **kw: RedisRateLimiter(client, prefix=prefix, **kw),
        memory=lambda **kw: RedisThreadMemory(client, prefix=prefix, **kw),
        choices=lambda **kw: RedisChoices(client, prefix=prefix, **kw),
        advance=asyncio.sleep,
    )
    await client.aclose()
    delete_prefix(prefix)


# -- dedup ---------------------------------------------------------------------------------------


async def test_dedup_says_first_time_once_per_key(backend: Backend) -> None:
    dedup = backend.dedup()
    assert await dedup.first_time("slack:Ev1") is True
    assert await dedup.first_time("slack:Ev1") is False
    assert await dedup.first_time("slack:Ev2") is True
    assert await dedup.first_time("teams:Ev1") is True


async def test_dedup_of_concurrent_deliveries_lets_exactly_one_through(backend: Backend) -> None:
    dedup = backend.dedup()
    results = await asyncio.gather(*(dedup.first_time("slack:EvSAME") for _ in range(25)))
    assert results.count(True) == 1


async def test_dedup_forgets_a_key_after_its_retention(backend: Backend) -> None:
    dedup = backend.dedup(ttl=0.2)
    assert await dedup.first_time("slack:Ev1") is True
    await backend.advance(0.05)
    assert await dedup.first_time("slack:Ev1") is False
    await backend.advance(0.3)
    assert await dedup.first_time("slack:Ev1") is True


# -- uploads waiting for a choice of scope --------------------------------------------------------


def _upload(key: str) -> PendingUpload:
    job = {"id": f"{key}:default", "kind": "command", "choice": key}
    return PendingUpload(key, "kb", "U1", ("a.md", "b.md"), ("a.md",), "workspace", "private:U1", job)


async def test_an_upload_offered_a_choice_reads_back_as_kept(backend: Backend) -> None:
    choices = backend.choices()
    await choices.keep(_upload("Ev1"), due=None)
    assert await choices.get("Ev1") == _upload("Ev1")
    assert await choices.get("Ev2") is None


async def test_a_default_is_due_once_when_its_time_comes_even_to_concurrent_timers(backend: Backend) -> None:
    choices = backend.choices()
    await choices.keep(_upload("Ev1"), due=time.time() + 60)
    await choices.keep(_upload("Ev2"), due=time.time() - 1)
    found = await asyncio.gather(*(choices.due(time.time()) for _ in range(10)))
    assert sorted(u.key for batch in found for u in batch) == ["Ev2"]
    assert await choices.due(time.time() + 120) == [_upload("Ev1")]
    assert await choices.get("Ev2") is not None  # its buttons still work


async def test_a_choice_made_in_time_settles_the_default(backend: Backend) -> None:
    choices = backend.choices()
    await choices.keep(_upload("Ev1"), due=time.time() - 1)
    await choices.settle(_upload("Ev1"))
    assert await choices.due(time.time()) == []
    assert await choices.claim(_upload("Ev1")) == ()  # a job of its default queued before: nothing to do


async def test_a_default_claims_its_waiting_documents_once_even_from_concurrent_jobs(
    backend: Backend,
) -> None:
    choices = backend.choices()
    await choices.keep(_upload("Ev1"), due=time.time() - 1)
    found = await asyncio.gather(*(choices.claim(_upload("Ev1")) for _ in range(10)))
    assert sorted(found, key=len) == [()] * 9 + [("a.md",)]


async def test_a_choice_on_a_later_uploads_buttons_ends_an_earlier_uploads_wait(backend: Backend) -> None:
    """The same document sent again (or forgotten and sent again): a choice on either upload's buttons
    is the sender's, and the first upload's default must not undo it."""
    choices = backend.choices()
    await choices.keep(_upload("Ev1"), due=time.time() - 1)
    again = PendingUpload("Ev2", "kb", "U1", ("a.md",), (), "workspace", "private:U1", {})
    await choices.keep(again, due=None)
    await choices.settle(again)
    assert await choices.claim(_upload("Ev1")) == ()


async def test_a_choice_by_one_sender_ends_no_wait_of_anothers_document_of_that_name(
    backend: Backend,
) -> None:
    choices = backend.choices()
    theirs = PendingUpload("Ev2", "kb", "U2", ("a.md",), ("a.md",), "workspace", "private:U2", {})
    await choices.keep(theirs, due=time.time() - 1)
    await choices.settle(_upload("Ev1"))  # U1's old buttons, for a document of that name since deleted
    assert await choices.claim(theirs) == ("a.md",)


async def test_a_document_sent_again_as_new_waits_for_the_later_uploads_default(backend: Backend) -> None:
    choices = backend.choices()
    await choices.keep(_upload("Ev1"), due=time.time() - 1)
    await choices.keep(_upload("Ev2"), due=time.time() + 60)
    assert await choices.claim(_upload("Ev1")) == ()
    assert await choices.claim(_upload("Ev2")) == ("a.md",)


# -- rate limit ----------------------------------------------------------------------------------
# 600 a minute = one token every 0.1 s.


async def test_rate_limit_allows_the_burst_then_says_how_long_to_wait(backend: Backend) -> None:
    limiter = backend.limiter(per_minute=600, burst=3)
    assert [await limiter.acquire("T1:U1") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await limiter.acquire("T1:U1")
    assert 0.05 < wait <= 0.1  # in Redis a little of the 0.1 s has already passed
    assert await limiter.acquire("T1:U2") == 0.0  # each user has their own bucket

    await backend.advance(wait + 0.002)
    assert await limiter.acquire("T1:U1") == 0.0  # after the wait it said, the user may go ahead
    assert await limiter.acquire("T1:U1") > 0.05  # and the bucket is empty again


async def test_rate_limit_refills_up_to_the_burst_and_no_further(backend: Backend) -> None:
    limiter = backend.limiter(per_minute=600, burst=3)
    for _ in range(3):
        await limiter.acquire("T1:U1")
    await backend.advance(0.6)  # six tokens' worth of time; the bucket holds three
    assert [await limiter.acquire("T1:U1") == 0.0 for _ in range(4)] == [True, True, True, False]


async def test_rate_limit_holds_under_concurrent_requests(backend: Backend) -> None:
    limiter = backend.limiter(per_minute=60, burst=4)
    waits = await asyncio.gather(*(limiter.acquire("T1:U1") for _ in range(12)))
    assert sum(1 for w in waits if w == 0.0) == 4
    assert all(0 < w <= 1.0 for w in waits if w != 0.0)


# -- thread memory -------------------------------------------------------------------------------


async def test_thread_memory_keeps_turns_in_order_per_thread(backend: Backend) -> None:
    memory = backend.memory()
    assert await memory.history("slack:T1:C1:1.0") == []
    assert await memory.known("slack:T1:C1:1.0") is False

    await memory.append(
        "slack:T1:C1:1.0", Turn("user", "How do I: rotate?\nSecond line"), Turn("assistant", "A [1]")
    )
    await memory.append("slack:T1:C1:1.0", Turn("user", "And then?"))
    await memory.append("teams:19:abc;messageid=2", Turn("user", "Elsewhere"))

    assert await memory.history("slack:T1:C1:1.0") == [
        Turn("user", "How do I: rotate?\nSecond line"),
        Turn("assistant", "A [1]"),
        Turn("user", "And then?"),
    ]
    assert await memory.known("slack:T1:C1:1.0") is True
    assert await memory.history("teams:19:abc;messageid=2") == [Turn("user", "Elsewhere")]
    assert await memory.known("slack:T1:C1:2.0") is False


async def test_thread_memory_drops_the_oldest_turns_beyond_the_character_budget(backend: Backend) -> None:
    memory = backend.memory(max_chars=20)
    await memory.append("t", Turn("user", "a" * 8), Turn("assistant", "b" * 8))
    await memory.append("t", Turn("user", "c" * 8))  # 24 > 20: the oldest goes
    assert await memory.history("t") == [Turn("assistant", "b" * 8), Turn("user", "c" * 8)]

    await memory.append("t", Turn("assistant", "d" * 50))  # alone over budget: the last turn stays
    assert await memory.history("t") == [Turn("assistant", "d" * 50)]


async def test_thread_memory_counts_characters_not_bytes(backend: Backend) -> None:
    memory = backend.memory(max_chars=10)
    await memory.append("t", Turn("user", "ééééé"), Turn("assistant", "日本語です。"[:5]))  # 10 characters
    assert [t.text for t in await memory.history("t")] == ["ééééé", "日本語です"]


async def test_appending_no_turns_does_not_make_a_thread_known(backend: Backend) -> None:
    memory = backend.memory()
    await memory.append("t")
    assert await memory.known("t") is False


# -- several bot processes on one Redis ----------------------------------------------------------


class RecordingRunner:
    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def submit(self, job: Job) -> None:
        self.jobs.append(job)

    async def drain(self) -> None:
        return None


class RecordingSender:
    def __init__(self) -> None:
        self.begun: list[Working] = []
        self.finished: list[Reply] = []

    async def begin(self, address: Address, working: Working) -> Handle | None:
        self.begun.append(working)
        return Shown("1.1")

    async def update(self, address: Address, handle: Handle | None, update: Update) -> Handle | None:
        return handle

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> None:
        self.finished.append(reply)


@dataclass
class Process:
    """What one `threadwise serve` replica holds: its own connection pool, runner and sender."""

    client: aioredis.Redis
    runner: RecordingRunner
    sender: RecordingSender
    dispatcher: Dispatcher


def _process(prefix: str, *, burst: int = 100) -> Process:
    client = aioredis.Redis.from_url(REDIS_URL)
    runner, sender = RecordingRunner(), RecordingSender()
    dispatcher = Dispatcher(
        runner=runner,
        platforms={"slack": Outlet("slack", sender)},
        dedup=RedisDeduplicator(client, prefix=prefix),
        memory=MemoryThreadMemory(),
        limiter=RedisRateLimiter(client, prefix=prefix, per_minute=1, burst=burst),
        kb_for=lambda workspace: workspace,
        admins=(),
    )
    return Process(client, runner, sender, dispatcher)


def _question(event_id: str, text: str = "How do I rotate the VPN certificate?") -> Incoming:
    return Incoming(
        platform="slack",
        workspace="slack-T1",
        user="U1",
        text=text,
        event_id=event_id,
        is_direct=False,
        mentioned=True,
        thread="slack:T1:C1:1000.1",
        address=Place("C1", "1000.1"),
    )


@pytest.fixture
async def two_processes() -> AsyncIterator[Callable[..., tuple[Process, Process]]]:
    sync_client().close()
    prefix = unique_prefix()
    made: list[Process] = []

    def make(**kw: Any) -> tuple[Process, Process]:
        pair = (_process(prefix, **kw), _process(prefix, **kw))
        made.extend(pair)
        return pair

    yield make
    for process in made:
        await process.client.aclose()
    delete_prefix(prefix)


async def test_an_event_delivered_to_two_bot_processes_is_answered_by_one(
    two_processes: Callable[..., tuple[Process, Process]],
) -> None:
    a, b = two_processes()
    # Slack retries an event it thinks timed out; the load balancer sends the retry to the other replica.
    results = await asyncio.gather(
        a.dispatcher.handle(_question("Ev0SAME")), b.dispatcher.handle(_question("Ev0SAME"))
    )
    assert sum(job is not None for job in results) == 1
    assert len(a.runner.jobs) + len(b.runner.jobs) == 1
    assert len(a.sender.begun) + len(b.sender.begun) == 1  # one "Thinking…" in the thread, not two

    assert await b.dispatcher.handle(_question("Ev0OTHER")) is not None  # a new event goes through
    assert await a.dispatcher.handle(_question("Ev0OTHER")) is None


async def test_the_rate_limit_holds_across_bot_processes(
    two_processes: Callable[..., tuple[Process, Process]],
) -> None:
    a, b = two_processes(burst=2)
    assert await a.dispatcher.handle(_question("Ev1")) is not None
    assert await b.dispatcher.handle(_question("Ev2")) is not None
    assert await a.dispatcher.handle(_question("Ev3")) is None  # the third in a row, on either replica
    (refusal,) = a.sender.finished
    assert refusal.text == text.RATE_LIMITED.format(seconds=60)
