"""Teams with RUNNER=queue: /api/messages only queues; a real arq worker answers through the Bot Connector.

Activities → our aiohttp app (CloudAdapter) → QueueRunner → redis-server → `build_worker` (what
`threadwise worker` runs, here in burst mode) → TeamsSender's continue_conversation → the fake Bot
Connector. The worker has its own engine and store, as a worker machine would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.compose import build_worker
from bot.infra.jobqueue import QueueRunner
from bot.settings import DEFAULT_TEAMS_FILE_HOSTS, Settings
from bot.teams import text as teams_text
from tests.bot.slack.test_queue_mode import queue_redis  # noqa: F401 (a fixture)
from tests.bot.teams.activities import (
    CHANNEL,
    PERSONAL_CONVERSATION,
    channel_mention,
    personal_file_upload,
    personal_message,
)
from tests.bot.teams.conftest import VPN_GUIDE, TeamsBot, TeamsBotFactory
from tests.fakes.bot_connector import Call, FakeBotConnector

pytestmark = pytest.mark.usefixtures("clean_env")  # no threadwise variable reaches the Settings here

QUESTION = "How do I rotate the VPN certificate?"


async def _run_worker(tmp_path: Path, redis_url: str, fake: FakeBotConnector) -> None:
    """One worker (Teams only: no Slack token) until the queue is empty; the fake's files allowed."""
    settings = Settings(
        redis_url=redis_url,
        teams_file_hosts=[*DEFAULT_TEAMS_FILE_HOSTS, fake.base_url],
        chroma_persist_directory=str(tmp_path / "worker" / "chroma"),
        llm_provider="extractive",
        worker_concurrency=1,  # the upload before the question, as they were queued
        worker_metrics_port=0,
        upload_choice_minutes=0,  # a DM upload's default scope at once
    )
    worker = build_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def _queue_bot(make_teams_bot: TeamsBotFactory, redis_url: str) -> tuple[TeamsBot, QueueRunner]:
    bot = await make_teams_bot(runner="queue", redis_url=redis_url)
    runner = bot.chat.runner
    assert isinstance(runner, QueueRunner)
    return bot, runner


def _messages(fake: FakeBotConnector, conversation: str) -> list[Call]:
    return [c for c in fake.activities(type="message") if c.conversation_id == conversation]


async def test_teams_messages_are_queued_and_a_worker_answers_in_the_thread_with_citations_once(
    make_teams_bot: TeamsBotFactory,
    fake: FakeBotConnector,
    queue_redis: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    bot, runner = await _queue_bot(make_teams_bot, queue_redis)
    upload = personal_file_upload("vpn.md", fake.add_file("vpn.md", VPN_GUIDE), service_url=fake.service_url)
    question = channel_mention(QUESTION, service_url=fake.service_url, root="1759881511856")
    thread = f"{CHANNEL};messageid=1759881511856"
    for activity in (upload, question, question):  # Teams redelivers an activity it thinks was lost
        assert (await bot.post(activity)).status == 200

    # The service showed it is working (once per activity) and queued two jobs; it ran neither.
    assert [(c.type, c.conversation_id) for c in fake.calls] == [
        ("typing", PERSONAL_CONVERSATION),
        ("typing", thread),
    ]
    assert fake.downloads == []
    assert await runner.depth() == {"running": 0, "pending": 2, "deferred": 0}

    await _run_worker(tmp_path, queue_redis, fake)

    (confirmation,) = _messages(fake, PERSONAL_CONVERSATION)
    assert confirmation.text.startswith("✅ Added **vpn.md**: 1 passage")
    assert confirmation.activity_id == upload["id"]  # under the message that carried the file
    (download,) = fake.downloads
    assert "authorization" not in download  # the pre-authenticated link, no bot token
    (answer,) = _messages(fake, thread)  # in the thread, never the channel; exactly one
    assert answer.method == "POST" and answer.activity_id == question["id"]
    assert answer.body["replyToId"] == question["id"]
    assert "Keychain" in answer.text
    (claim,) = answer.body["entities"][0]["citation"]  # Teams' own citation pop-up
    assert (claim["position"], claim["appearance"]["name"]) == (1, "vpn.md")
    assert claim["appearance"]["url"] == upload["attachments"][0]["contentUrl"]
    assert await runner.depth() == {"running": 0, "pending": 0, "deferred": 0}

    # The same activity once more, after it was answered: nothing is queued, nothing is sent.
    calls = len(fake.calls)
    assert (await bot.post(question)).status == 200
    assert await runner.depth() == {"running": 0, "pending": 0, "deferred": 0}
    await _run_worker(tmp_path, queue_redis, fake)
    assert len(fake.calls) == calls

    # The worker's answer is in the shared thread memory: the service takes an unmentioned follow-up.
    follow_up = channel_mention(
        "Where do I download the new one?",
        service_url=fake.service_url,
        root="1759881511856",
        mentioned=False,
    )
    assert (await bot.post(follow_up)).status == 200
    assert await runner.depth() == {"running": 0, "pending": 1, "deferred": 0}
    await _run_worker(tmp_path, queue_redis, fake)
    _, second = _messages(fake, thread)
    assert second.activity_id == follow_up["id"] and "IT portal" in second.text


async def test_a_personal_chat_question_and_an_expired_file_link_are_answered_by_the_worker(
    make_teams_bot: TeamsBotFactory,
    fake: FakeBotConnector,
    queue_redis: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    bot, _ = await _queue_bot(make_teams_bot, queue_redis)
    expired = fake.add_file("vpn.md", VPN_GUIDE)
    fake.expire_file(expired, status=401)
    activities: list[dict[str, Any]] = [
        personal_file_upload("vpn.md", expired, service_url=fake.service_url),
        personal_file_upload("keys.md", "http://127.0.0.1:1/secret", service_url=fake.service_url),
        personal_message(QUESTION, service_url=fake.service_url),
    ]
    for activity in activities:
        assert (await bot.post(activity)).status == 200

    await _run_worker(tmp_path, queue_redis, fake)

    refused, not_teams, not_found = _messages(fake, PERSONAL_CONVERSATION)
    assert refused.activity_id == activities[0]["id"]
    assert refused.text == "⚠️ " + teams_text.FILE_LINK_EXPIRED.format(name="vpn.md")
    # The worker checks the host too.
    assert not_teams.text == "⚠️ " + teams_text.FILE_HOST_REFUSED.format(name="keys.md")
    assert not_found.activity_id == activities[2]["id"]
    # The file never arrived, so nothing answers from it.
    assert not_found.text.startswith("I couldn't find anything about that in the knowledge base.")
