"""Scale-out with real processes: `redis-server`, `chroma run`, two `threadwise serve` (RUNNER=queue)
and two `threadwise worker`, the fake Slack in this test's loop, signed events spread across both
serves — and one worker killed with SIGKILL in the middle of a job.

Also graceful shutdown: SIGTERM lets running jobs finish (worker and in-process serve), exit status 0.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import chromadb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rag.chroma import ChromaStore
from tests.bot.slack import payloads
from tests.bot.slack.conftest import HOLIDAYS, VPN_GUIDE
from tests.fakes.slack_server import FakeSlack
from tests.processes import VENV_BIN, Process, Processes, free_port, http_status, ready, threadwise_env, until

pytestmark = pytest.mark.slow

KB = f"slack-{payloads.TEAM}"
# A killed worker's job runs again once its lease lapses (seconds), not after its timeout (minutes).
JOB_TIMEOUT_S = 300
LEASE_S = 5
ANSWERED_AFTER_A_KILL_S = 60  # the promise to a user whose question was on a worker that died
VPN_QUESTION = "How do I rotate the VPN certificate?"
VPN_ANSWER = "Keychain"
HOLIDAY_QUESTION = "When is the office closed for the summer picnic?"
HOLIDAY_ANSWER = "first Monday of August"


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(
        team_id=payloads.TEAM, bot_user_id=payloads.BOT_USER, bot_id=payloads.BOT_ID
    ) as fake:
        yield fake


@dataclass
class Serve:
    proc: Process
    url: str

    async def send(self, body: dict[str, Any]) -> int:
        return await self._post(json.dumps(body).encode(), "application/json")

    async def send_form(self, form: str) -> int:
        return await self._post(form.encode(), "application/x-www-form-urlencoded")

    async def _post(self, raw: bytes, content_type: str) -> int:
        headers = payloads.signed_headers(raw, content_type=content_type)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/slack/events", data=raw, headers=headers) as response,
        ):
            return response.status


def start_serve(procs: Processes, name: str, env: dict[str, str]) -> Serve:
    port = free_port()
    proc = procs.threadwise(name, "serve", env={**env, "HOST": "127.0.0.1", "PORT": str(port)})
    return Serve(proc, f"http://127.0.0.1:{port}")


def slack_env(fake: FakeSlack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "LLM_PROVIDER": "extractive",
        "LOG_FORMAT": "json",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "600",
        "RATE_LIMIT_BURST": "100",
        "UPLOAD_CHOICE_MINUTES": "0",  # a DM upload's default scope at once, unless a test sets a wait
    }


async def queue_env(procs: Processes, fake: FakeSlack, **settings: str) -> tuple[dict[str, str], int]:
    redis_url = await procs.redis()
    _, chroma_port = await procs.chroma()
    env = {
        **slack_env(fake),
        "RUNNER": "queue",
        "REDIS_URL": redis_url,
        "CHROMA_HOST": "127.0.0.1",
        "CHROMA_PORT": str(chroma_port),
        "WORKER_METRICS_PORT": "0",
        "JOB_LEASE_SECONDS": "3",
        **settings,
    }
    return env, chroma_port


async def start_worker(procs: Processes, name: str, env: dict[str, str], *watched: Process) -> Process:
    worker = procs.threadwise(name, "worker", env=env)
    await until(lambda: bool(worker.events("worker_ready")), 150, worker, *watched)
    return worker


_question_ts = itertools.count(1)


def mention(question: str) -> dict[str, Any]:
    """An app_mention whose ts can never be a ts the fake gives the bot's messages (current time)."""
    return payloads.app_mention(question, ts=f"1500000000.{next(_question_ts):06d}")


def upload(fake: FakeSlack, name: str, data: bytes) -> dict[str, Any]:
    """A file shared in the bot's DM (its ts, like `mention`'s, apart from the bot's messages')."""
    body = payloads.dm_file_share([fake.add_file(name, data, mimetype="text/markdown")])
    body["event"]["ts"] = body["event"]["event_ts"] = f"1500000000.{next(_question_ts):06d}"
    return body


async def asked_in(serve: Serve, fake: FakeSlack, channel: str, question: str) -> str:
    """What the bot answered to a mention in `channel`, once its answer is written."""
    body = mention(question)
    body["event"]["channel"] = channel
    assert await serve.send(body) == 200
    ts = body["event"]["ts"]
    await fake.wait_for(lambda: any(m.get("edits") for m in fake.thread(channel, ts)), 60)
    return " ".join(m["text"] for m in fake.thread(channel, ts))


def shows(fake: FakeSlack, channel: str, ts: str, words: str) -> bool:
    return any(words in m["text"] for m in fake.thread(channel, ts))


def placeholders(fake: FakeSlack, ts: str) -> int:
    return sum(1 for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts)


def job_tries(worker: Process, job_id: str) -> list[int]:
    return [int(e["job_try"]) for e in worker.events("job_started") if e.get("job_id") == job_id]


async def test_every_question_is_answered_once_across_serves_and_a_killed_worker(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    fake = fake_slack
    with Processes(tmp_path) as procs:
        env, chroma_port = await queue_env(
            procs,
            fake,
            JOB_TIMEOUT_SECONDS=str(JOB_TIMEOUT_S),
            JOB_LEASE_SECONDS=str(LEASE_S),
            JOB_RETRY_DELAY_SECONDS="1",
            WORKER_CONCURRENCY="2",
            WORKER_SHUTDOWN_GRACE_SECONDS="10",
        )
        serves = [start_serve(procs, f"serve-{i}", env) for i in (1, 2)]
        metrics_ports = [free_port(), free_port()]
        workers = [
            procs.threadwise(
                f"worker-{i}", "worker", env={**env, "HOST": "127.0.0.1", "WORKER_METRICS_PORT": str(port)}
            )
            for i, port in enumerate(metrics_ports, start=1)
        ]
        everyone = [*(s.proc for s in serves), *workers]
        # Generous limits: on a busy machine four processes loading at once take a while.
        for serve in serves:
            await until(lambda serve=serve: ready(serve.url), 120, *everyone)
        await until(lambda: all(w.events("worker_ready") for w in workers), 150, *everyone)

        # Two documents, uploaded in the DM through different serves, ingested by the workers.
        uploads = [upload(fake, "vpn.md", VPN_GUIDE), upload(fake, "holidays.md", HOLIDAYS)]
        for serve, shared in zip(serves, uploads, strict=True):
            assert await serve.send(shared) == 200
        for shared in uploads:
            await fake.wait_for(lambda u=shared: shows(fake, payloads.DM, u["event"]["ts"], "Added"), 30)

        # A question whose worker dies while it sends the answer: the call is held, then SIGKILL.
        fake.delay_next("chat.update", 60)
        doomed = mention(VPN_QUESTION)
        doomed_id = doomed["event_id"]
        assert await serves[0].send(doomed) == 200
        await fake.wait_for(lambda: "chat.update" in fake.held, 20)
        await until(lambda: any(job_tries(w, doomed_id) for w in workers), 10)
        (victim,) = [w for w in workers if job_tries(w, doomed_id)]
        (survivor,) = [w for w in workers if w is not victim]
        victim.popen.kill()
        killed = time.monotonic()
        await fake.wait_for(lambda: fake.dropped == ["chat.update"], 10)  # its answer never arrived

        # More questions meanwhile, through both serves; one event delivered to both; one message
        # that Slack sends as app_mention to one serve and as message.channels to the other.
        questions = [
            (mention(HOLIDAY_QUESTION), HOLIDAY_ANSWER, [serves[1]]),
            (mention(VPN_QUESTION), VPN_ANSWER, [serves[0]]),
            (mention(HOLIDAY_QUESTION), HOLIDAY_ANSWER, serves),
        ]
        twin = mention(VPN_QUESTION)
        as_message = payloads.channel_message(twin["event"]["text"], ts=twin["event"]["ts"])
        sends = [serve.send(body) for body, _, targets in questions for serve in targets]
        sends += [serves[0].send(twin), serves[1].send(as_message)]
        assert set(await asyncio.gather(*sends)) == {200}

        expected = {doomed["event"]["ts"]: VPN_ANSWER, twin["event"]["ts"]: VPN_ANSWER}
        expected.update({body["event"]["ts"]: words for body, words, _ in questions})
        await fake.wait_for(
            lambda: all(shows(fake, payloads.CHANNEL, ts, words) for ts, words in expected.items()),
            ANSWERED_AFTER_A_KILL_S,
        )
        assert time.monotonic() - killed < ANSWERED_AFTER_A_KILL_S

        for ts, words in expected.items():
            (message,) = fake.thread(payloads.CHANNEL, ts)  # exactly one message: the answer
            assert words in message["text"], (ts, message["text"])
            assert placeholders(fake, ts) == 1  # one placeholder: the event was taken once
            assert message["edits"] == 1  # replaced by one answer (the killed worker's never arrived)
        assert job_tries(survivor, doomed_id) == [2]  # the killed worker's job ran again, there

        client = chromadb.HttpClient(
            host="127.0.0.1", port=chroma_port, settings=chromadb.Settings(anonymized_telemetry=False)
        )
        documents = await asyncio.to_thread(ChromaStore(client, prefix="threadwise").documents, KB)
        assert sorted(d.name for d in documents) == ["holidays.md", "vpn.md"]

        # The surviving worker counted what it did, at its own /metrics.
        port = metrics_ports[workers.index(survivor)]
        requests = await scraped(f"http://127.0.0.1:{port}/metrics", "threadwise_requests")
        assert requests[("ask", "answered", "slack")] == len(expected)  # all, since the kill

        # SIGTERM to the worker while it runs a job: the job finishes, then the worker exits 0.
        fake.delay_next("chat.update", 2)
        last = mention(HOLIDAY_QUESTION)
        assert await serves[1].send(last) == 200
        await fake.wait_for(lambda: "chat.update" in fake.held, 10)
        survivor.signal(signal.SIGTERM)
        assert await asyncio.to_thread(survivor.wait, 20) == 0
        (message,) = fake.thread(payloads.CHANNEL, last["event"]["ts"])
        assert HOLIDAY_ANSWER in message["text"]

        for serve in serves:
            serve.proc.signal(signal.SIGTERM)
        assert [await asyncio.to_thread(s.proc.wait, 15) for s in serves] == [0, 0]


async def test_sigterm_lets_a_serve_finish_its_running_job_and_exit_0(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    fake = fake_slack
    with Processes(tmp_path) as procs:
        env = {**slack_env(fake), "CHROMA_PERSIST_DIRECTORY": str(tmp_path / "data" / "chroma")}
        serve = start_serve(procs, "serve", env)
        await until(lambda: ready(serve.url), 150, serve.proc)
        shared = upload(fake, "vpn.md", VPN_GUIDE)
        assert await serve.send(shared) == 200
        await fake.wait_for(lambda: shows(fake, payloads.DM, shared["event"]["ts"], "Added"), 30)

        fake.delay_next("chat.update", 3)
        question = mention(VPN_QUESTION)
        assert await serve.send(question) == 200
        await fake.wait_for(lambda: "chat.update" in fake.held, 20)
        serve.proc.signal(signal.SIGTERM)

        # It stops taking requests at once, and still delivers the answer it was sending.
        await until(lambda: _refused(serve.url), 2, serve.proc)
        assert serve.proc.alive()
        assert await asyncio.to_thread(serve.proc.wait, 20) == 0
        (message,) = fake.thread(payloads.CHANNEL, question["event"]["ts"])
        assert VPN_ANSWER in message["text"]
        assert fake.dropped == []


async def scraped(url: str, family: str) -> dict[tuple[str, ...], float]:
    """One counter from GET /metrics: its label values (ordered by label name) → value."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        body = await response.text()
    (found,) = [f for f in text_string_to_metric_families(body) if f.name == family]
    return {
        tuple(v for _, v in sorted(s.labels.items())): s.value
        for s in found.samples
        if s.name == f"{family}_total"
    }


async def _refused(url: str) -> bool:
    return await http_status(f"{url}/health", timeout=1) is None


async def test_scopes_hold_across_serve_and_worker_and_a_new_scope_takes_effect_at_once(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    """Queue mode: a channel's document answers only there, a DM upload kept private by
    DEFAULT_UPLOAD_SCOPE answers no channel, and the operator's new scope for the channel's document
    (`threadwise ingest --scope`, another process) is what the running worker answers by next."""
    fake = fake_slack
    with Processes(tmp_path) as procs:
        env, _ = await queue_env(procs, fake, DEFAULT_UPLOAD_SCOPE="private")
        serve = start_serve(procs, "serve", env)
        await until(lambda: ready(serve.url), 120, serve.proc)
        await start_worker(procs, "worker", env, serve.proc)
        guide = tmp_path / "vpn.md"
        guide.write_bytes(VPN_GUIDE)

        async def operator(*args: str) -> None:
            ingest = procs.start(
                "ingest", [str(VENV_BIN / "threadwise"), "ingest", *args], env=threadwise_env(env)
            )
            assert await asyncio.to_thread(ingest.wait, 120) == 0, ingest.output()[-2000:]

        async def asked(channel: str, question: str = VPN_QUESTION) -> str:
            return await asked_in(serve, fake, channel, question)

        await operator(str(guide), "--kb", KB, "--scope", "channel:C-SALES")
        shared = upload(fake, "holidays.md", HOLIDAYS)  # in the DM: private to its sender
        assert await serve.send(shared) == 200
        await fake.wait_for(lambda: shows(fake, payloads.DM, shared["event"]["ts"], "Only you can ask"), 60)

        assert VPN_ANSWER in await asked("C-SALES")
        assert VPN_ANSWER not in await asked(payloads.CHANNEL)
        assert HOLIDAY_ANSWER not in await asked(payloads.CHANNEL, HOLIDAY_QUESTION)

        await operator(str(guide), "--kb", KB, "--scope", "workspace")  # the same bytes: a new scope
        assert VPN_ANSWER in await asked(payloads.CHANNEL)


async def test_a_dm_uploads_choice_and_its_default_work_across_serve_and_worker(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    """Queue mode: the worker reads a DM upload (its sender's alone until a choice) and keeps the
    choice's record in Redis; a click taken by serve is applied by the worker; an upload no one
    chooses for gets DEFAULT_UPLOAD_SCOPE from serve's timer, applied by the worker."""
    fake = fake_slack
    with Processes(tmp_path) as procs:
        env, _ = await queue_env(procs, fake, UPLOAD_CHOICE_MINUTES="0.25")  # 15 s
        serve = start_serve(procs, "serve", env)
        await until(lambda: ready(serve.url), 120, serve.proc)
        await start_worker(procs, "worker", env, serve.proc)

        def asked(channel: str, question: str) -> Awaitable[str]:
            return asked_in(serve, fake, channel, question)

        guide, holidays = upload(fake, "vpn.md", VPN_GUIDE), upload(fake, "holidays.md", HOLIDAYS)

        def said_in_dm(body: dict[str, Any], words: str) -> Awaitable[None]:
            return fake.wait_for(lambda: shows(fake, payloads.DM, body["event"]["ts"], words), 60)

        for shared in (guide, holidays):
            assert await serve.send(shared) == 200
            await said_in_dm(shared, "Only you can ask")
        assert HOLIDAY_ANSWER not in await asked(payloads.CHANNEL, HOLIDAY_QUESTION)

        (reply,) = fake.thread(payloads.DM, guide["event"]["ts"])
        block = next(b for b in reply["blocks"] if b.get("block_id", "").startswith("threadwise_scope_"))
        click = json.loads(
            unquote(
                payloads.block_actions(
                    action_id="threadwise_scope_channel", value="", message=reply, channel=payloads.DM
                ).removeprefix("payload=")
            )
        )
        click["actions"][0].update(
            block_id=block["block_id"], type="conversations_select", selected_conversation="C0SALES01"
        )
        assert await serve.send_form("payload=" + quote(json.dumps(click))) == 200
        await said_in_dm(guide, "Only channel")
        await said_in_dm(holidays, "No choice was made")  # the one no one chose for: the default

        assert VPN_ANSWER in await asked("C0SALES01", VPN_QUESTION)
        assert VPN_ANSWER not in await asked(payloads.CHANNEL, VPN_QUESTION)
        assert HOLIDAY_ANSWER in await asked(payloads.CHANNEL, HOLIDAY_QUESTION)
