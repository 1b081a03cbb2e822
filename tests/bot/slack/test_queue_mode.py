"""RUNNER=queue in one process: the Slack service enqueues on the real Redis, a real arq worker runs it.

Signed events → our aiohttp app → QueueRunner → redis-server → `build_worker` (the
worker `threadwise worker` runs, here in burst mode) → the real Slack client → FakeSlack.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.compose import build_worker
from bot.core.model import Job
from bot.infra.jobqueue import QueueRunner
from bot.settings import Settings
from bot.slack.address import SlackAddress
from tests.bot.slack import payloads
from tests.bot.slack.conftest import VPN_GUIDE, HarnessFactory, SlackHarness
from tests.processes import Processes

QUESTION = "How do I rotate the VPN certificate?"


@pytest.fixture
async def queue_redis(tmp_path: Path) -> AsyncIterator[str]:
    """A redis-server of this test's own: nothing shared with a test run beside it."""
    with Processes(tmp_path / "processes") as procs:
        yield await procs.redis()


def _worker_settings(slack: SlackHarness, redis_url: str, store: Path, **values: Any) -> Settings:
    return Settings(
        slack_bot_token=slack.fake.bot_token,
        slack_signing_secret=payloads.SIGNING_SECRET,
        slack_api_url=slack.fake.api_url,
        redis_url=redis_url,
        chroma_persist_directory=str(store / "chroma"),  # each worker its own: one process per store
        llm_provider="extractive",
        worker_concurrency=1,  # the upload before the question, as they were queued
        worker_metrics_port=0,
        upload_choice_minutes=0,  # a DM upload's default scope at once
        **values,
    )


async def _run_worker(slack: SlackHarness, redis_url: str, tmp_path: Path) -> None:
    worker = build_worker(
        _worker_settings(slack, redis_url, tmp_path / "worker"), burst=True, handle_signals=False
    )
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def test_the_service_only_queues_and_a_worker_answers_in_the_thread(
    make_slack: HarnessFactory, queue_redis: str, tmp_path: Path
) -> None:
    slack = await make_slack(runner="queue", redis_url=queue_redis)
    runner = slack.chat.runner
    assert isinstance(runner, QueueRunner)
    upload = payloads.dm_file_share([slack.fake.add_file("vpn.md", VPN_GUIDE, mimetype="text/markdown")])
    question = payloads.app_mention(QUESTION)
    for body in (upload, question):  # queued in this order, so the worker reads before it answers
        assert (await slack.send(body)).status == 200
        await slack.settle()

    # The service showed it is working and queued both jobs; it ran neither.
    assert sorted(p["thread_ts"] for p in slack.posts()) == sorted(
        b["event"]["ts"] for b in (upload, question)
    )
    assert slack.updates() == [] and slack.fake.downloads == []
    assert await runner.depth() == {"running": 0, "pending": 2, "deferred": 0}

    await _run_worker(slack, queue_redis, tmp_path)

    (confirmation,) = slack.fake.thread(payloads.DM, upload["event"]["ts"])
    assert "Added *vpn.md*" in confirmation["text"]
    (answer,) = slack.fake.thread(payloads.CHANNEL, question["event"]["ts"])
    assert "Keychain" in answer["text"]  # the placeholder, edited by the worker
    assert answer["edits"] == 1
    assert await runner.depth() == {"running": 0, "pending": 0, "deferred": 0}


async def test_a_job_id_is_queued_once_whether_waiting_or_done(
    make_slack: HarnessFactory, queue_redis: str, tmp_path: Path
) -> None:
    slack = await make_slack(runner="queue", redis_url=queue_redis)
    runner = slack.chat.runner
    job = Job(
        id="Ev0DUPLICATE0",
        kind="command",
        platform="slack",
        kb=f"slack-{payloads.TEAM}",
        user=payloads.USER,
        text="help",
        thread=f"{payloads.DM}:1.1",
        address=SlackAddress(
            team=payloads.TEAM,
            channel=payloads.DM,
            user=payloads.USER,
            event_id="Ev0DUPLICATE0",
            thread_ts="1.1",
            dm=True,
        ),
    )

    await runner.submit(job)
    await runner.submit(job)  # while it waits
    assert await runner.depth() == {"running": 0, "pending": 1, "deferred": 0}
    await _run_worker(slack, queue_redis, tmp_path)
    await runner.submit(job)  # after it ran: arq keeps its result, and with it the id
    assert await runner.depth() == {"running": 0, "pending": 0, "deferred": 0}

    (reply,) = slack.posts()
    assert "answers questions from your team's documents" in reply["text"]


async def test_a_job_still_running_when_the_grace_period_ends_goes_back_to_the_queue(
    make_slack: HarnessFactory, queue_redis: str, tmp_path: Path
) -> None:
    slack = await make_slack(runner="queue", redis_url=queue_redis)
    slack.fake.delay_next("chat.postMessage", 30)  # the reply hangs
    assert (await slack.send(payloads.dm_message("help"))).status == 200
    await slack.settle()
    settings = _worker_settings(slack, queue_redis, tmp_path / "first", worker_shutdown_grace_seconds=1)
    first = build_worker(settings, handle_signals=False)
    running = asyncio.create_task(first.async_run())
    await slack.fake.wait_for(lambda: "chat.postMessage" in slack.fake.held, 20)

    first.handle_sig_wait_for_completion(signal.SIGTERM)  # what arq's SIGTERM handler calls
    with pytest.raises(asyncio.CancelledError):
        await running
    await first.close()
    assert first.jobs_retried == 1 and first.jobs_complete == 0
    await slack.fake.wait_for(lambda: slack.fake.dropped == ["chat.postMessage"])

    await _run_worker(slack, queue_redis, tmp_path)  # another worker takes it at once

    (reply,) = slack.posts()
    assert "answers questions from your team's documents" in reply["text"]
