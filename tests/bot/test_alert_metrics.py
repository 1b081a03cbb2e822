"""The figures added for the alert rules: the container's memory limit, the oldest waiting job, the
newest backup, and the backup noted in Redis."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bot.compose import build_engine
from bot.core.model import Job
from bot.core.runner import InProcessRunner
from bot.infra.backup_record import RedisBackupRecord, note_backup
from bot.infra.memlimit import memory_limit_bytes
from bot.infra.metrics import Metrics
from bot.settings import load_settings
from rag.backup import newest_backup
from rag.chroma import ChromaStore
from tests.bot.test_runner import job
from tests.conftest import EngineFactory
from tests.fakes.groq_server import FakeGroq
from tests.redisdb import REDIS_URL, sync_client


def test_the_memory_limit_is_read_from_cgroup_v2_or_v1(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert memory_limit_bytes((v2, v1)) == math.inf  # neither file: no limit known
    v1.write_text("9223372036854771712\n")  # cgroup v1 without a limit
    assert memory_limit_bytes((v2, v1)) == math.inf
    v1.write_text("2147483648\n")
    assert memory_limit_bytes((v2, v1)) == 2**31
    v2.write_text("max\n")
    assert memory_limit_bytes((v2, v1)) == math.inf
    v2.write_text("805306368\n")
    assert memory_limit_bytes((v2, v1)) == 768 * 2**20


async def test_the_oldest_job_waiting_for_a_slot_is_timed() -> None:
    release = asyncio.Event()

    async def run(job: Job) -> None:
        await release.wait()

    runner = InProcessRunner(run, concurrency=1)
    for n in range(2):
        await runner.submit(job(n, "ask"))
    await asyncio.sleep(0.2)
    assert await runner.depth() == {"running": 1, "pending": 1}
    assert await runner.oldest_waiting_seconds() >= 0.15
    release.set()
    await runner.drain()
    assert await runner.oldest_waiting_seconds() == 0.0


def test_the_newest_backup_is_read_from_the_archive_names(tmp_path: Path) -> None:
    assert newest_backup(tmp_path / "none") is None
    for name in ("threadwise-backup-20260101T020000Z.tar.gz", "threadwise-backup-20260103T020000Z-1.tar.gz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert newest_backup(tmp_path) == datetime(2026, 1, 3, 2, 0, tzinfo=UTC)


async def test_a_backup_noted_in_redis_is_what_every_process_exports() -> None:
    sync_client().close()  # skips with what to do when no Redis answers
    async with Redis.from_url(REDIS_URL) as redis:
        record = RedisBackupRecord(redis)
        await redis.delete("threadwise:backup:last_success")
        assert await record.last_success() is None
        taken = datetime(2026, 1, 7, 2, 0, tzinfo=UTC)
        await note_backup(REDIS_URL, taken)
        assert await record.last_success() == taken.timestamp()


async def test_a_failing_model_and_a_failing_store_are_counted_by_stage(
    make_engine: EngineFactory, store: ChromaStore
) -> None:
    """threadwise_stage_errors_total{stage}: the model failing (the answer is then quoted from the
    passages) and the store failing under a search, as the engine the composition root builds."""
    metrics = Metrics(registry=CollectorRegistry())
    async with FakeGroq() as fake:
        fake.enqueue_status(500)
        settings = load_settings(
            llm_provider="groq", groq_api_key="gsk-test", groq_base_url=fake.base_url, llm_max_retries=0
        )
        engine = build_engine(
            settings,
            stage_observer=metrics.stage,
            failure_observer=metrics.stage_failed,
            embedder=make_engine().embedder,
            store=store,
        )
        await engine.ingest("kb", "vpn.md", b"# VPN\n\nThe VPN certificate expires every 90 days.\n")
        answer = await engine.ask("kb", "How often does the VPN certificate expire?")
        assert answer.mode == "extractive"  # the model failed: the passages are quoted

        def broken(*args: object, **kwargs: object) -> object:
            raise ConnectionError("the store went away")

        store.nearest = broken  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await engine.search("kb", "When does the certificate expire?")

    errors = {
        stage: metrics.registry.get_sample_value("threadwise_stage_errors_total", {"stage": stage})
        for stage in ("llm", "search", "embed")
    }
    assert errors == {"llm": 1.0, "search": 1.0, "embed": 0.0}
