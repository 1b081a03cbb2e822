"""Helpers shared by the benchmarks: an engine on a scratch store, the covidqa paths, percentiles, and
driving a service the way Slack does (signed events in, answers read back from the fake Slack)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.compose import build_engine, build_service, open_store  # noqa: E402
from bot.platform import Inbound  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.store import VectorStore  # noqa: E402
from tests.bot.slack import payloads  # noqa: E402
from tests.fakes.slack_server import FakeSlack  # noqa: E402
from tests.processes import VENV_BIN, Processes, threadwise_env  # noqa: E402

KB = f"slack-{payloads.TEAM}"  # the knowledge base of the fake Slack's workspace

COVIDQA = ROOT.parent / "shared" / "eval" / "covidqa"


def covidqa() -> Path:
    if not COVIDQA.exists():
        sys.exit(f"{COVIDQA} is not here: the benchmark needs ../shared/eval/covidqa")
    return COVIDQA


def scratch(directory: str | None = None, **overrides: object) -> tuple[Engine, VectorStore]:
    """An engine on an embedded store in `directory` (a new temporary one by default), no LLM; and
    the store, for a benchmark that fills it directly."""
    path = directory or tempfile.mkdtemp(prefix="threadwise-bench-")
    settings = load_settings(
        chroma_persist_directory=path, llm_provider="extractive", chroma_host=None, **overrides
    )
    store = open_store(settings)
    return build_engine(settings, store=store), store


def scratch_engine(directory: str | None = None, **overrides: object) -> Engine:
    return scratch(directory, **overrides)[0]


async def model_engine(
    store: str, groq_url: str, *, kb: str, guide: bytes, **overrides: object
) -> tuple[Engine, Settings]:
    """An engine on an embedded store in `store` that answers with the (fake) model at `groq_url`,
    the model loaded and `guide` in `kb` as vpn.md; and its settings, for a service around it."""
    settings = load_settings(
        chroma_persist_directory=store,
        chroma_host=None,
        llm_provider="groq",
        groq_api_key="bench",
        groq_base_url=groq_url,
        **overrides,
    )
    engine = build_engine(settings, store=open_store(settings))
    await asyncio.to_thread(engine.embedder.load)
    await engine.ingest(kb, "vpn.md", guide, uploader="bench")
    return engine, settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> str:
    return f"p50={statistics.median(values):.1f} ms  p95={percentile(values, 0.95):.1f} ms  (n={len(values)})"


def machine_note() -> str:
    """CPUs and load average now: a benchmark's figures mean little on a machine others are using."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} (1 min) {five:.2f} (5 min) at the start"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def threadwise_ingest(procs: Processes, env: dict[str, str], files: list[Path]) -> float:
    """`threadwise ingest --kb KB FILES` with the settings `env`, as an operator would; its seconds."""
    started = time.perf_counter()
    argv = [str(VENV_BIN / "threadwise"), "ingest", "--kb", KB, *map(str, files)]
    log = procs.root / "ingest.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=procs.cwd, env=threadwise_env(env), stdout=out, stderr=out
        )
        if await proc.wait() != 0:
            raise SystemExit(f"threadwise ingest failed:\n{log.read_text()[-2000:]}")
    return time.perf_counter() - started


def summary_s(values: list[float]) -> str:
    return f"p50={statistics.median(values):.2f} s  p95={percentile(values, 0.95):.2f} s  (n={len(values)})"


def covidqa_questions(documents: set[str] | None = None) -> list[str]:
    """covidqa's questions in file order, each once, optionally only those about `documents`."""
    rows = [json.loads(line) for line in (covidqa() / "qa.jsonl").read_text().splitlines()]
    picked = (r["question"] for r in rows if documents is None or r["source"] in documents)
    return list(dict.fromkeys(picked))


def fake_slack() -> FakeSlack:
    return FakeSlack(team_id=payloads.TEAM, bot_user_id=payloads.BOT_USER, bot_id=payloads.BOT_ID)


def slack_env(fake: FakeSlack) -> dict[str, str]:
    """Settings (as environment variables) for a service talking to `fake` over HTTP events, with a
    rate limit no benchmark reaches: a benchmark measures the service, not the limiter."""
    return {
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
        "RATE_LIMIT_BURST": "100000",
    }


@contextlib.asynccontextmanager
async def serve_in_process(settings: Settings, engine: Engine) -> AsyncIterator[tuple[str, Inbound]]:
    """`threadwise serve`'s web app with the Slack adapter on `engine`, on a free 127.0.0.1 port, in
    this event loop. Yields the events URL and Slack's routes (`drain()` waits for every job)."""
    service = build_service(settings, engine)
    runner = web.AppRunner(service.app)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/slack/events", service.inbound["slack"]
    finally:
        await runner.cleanup()


class SlackDriver:
    """Sends signed events to services' /slack/events and reads the outcome back from the fake Slack.

    Each event gets a ts no message of the bot can have (the fake stamps those with the current
    time), so the bot's placeholder in the thread is found by its thread_ts. A job is finished when
    its final reply arrives: the `chat.update` that carries `blocks` (the progress edits of an answer
    or an ingest carry text only), or the `chat.stopStream` that ends an answer streamed in.
    """

    _ts = itertools.count(1)

    def __init__(self, fake: FakeSlack, http: aiohttp.ClientSession, urls: list[str]) -> None:
        self.fake = fake
        self._http = http
        self._urls = itertools.cycle(urls)
        self.sent: dict[str, float] = {}  # event ts → time.perf_counter() when its POST started
        self._finished: dict[str, float] = {}  # event ts → when its final reply arrived
        self._seen = 0
        self._posts: set[asyncio.Task[None]] = set()

    @classmethod
    def new_ts(cls) -> str:
        return f"1500000000.{next(cls._ts):06d}"

    def ask(self, question: str, *, user: str) -> str:
        """Send an app_mention now, without waiting for the HTTP answer; returns its ts."""
        return self._send(payloads.app_mention(question, ts=self.new_ts(), user=user))

    def upload(self, files: Sequence[tuple[str, bytes]], *, user: str = payloads.USER) -> str:
        """Share files (name, content) in the bot's DM now, in one file_share event; returns its ts."""
        body = payloads.dm_file_share([self.fake.add_file(n, d, user=user) for n, d in files], user=user)
        body["event"]["ts"] = body["event"]["event_ts"] = self.new_ts()
        return self._send(body)

    async def acked(self) -> None:
        """Until every event sent so far has had its HTTP answer (raises if one was not 200)."""
        while self._posts:
            await asyncio.gather(*list(self._posts))

    def _send(self, body: dict[str, Any]) -> str:
        ts = str(body["event"]["ts"])
        self.sent[ts] = time.perf_counter()
        task = asyncio.create_task(self._post(body))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)
        return ts

    async def _post(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        headers = payloads.signed_headers(raw, content_type="application/json")
        async with self._http.post(next(self._urls), data=raw, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"/slack/events answered HTTP {response.status}")

    def finished_at(self, ts: str) -> float | None:
        """time.perf_counter() when the final reply to the event `ts` reached the fake Slack."""
        calls = self.fake.calls
        for call in calls[self._seen :]:  # the fake only appends: look at each call once
            final = call.method == "chat.stopStream" or (
                call.method == "chat.update" and "blocks" in call.params
            )
            if final:
                key = (str(call.params.get("channel")), str(call.params.get("ts")))
                thread = self.fake.messages.get(key, {}).get("thread_ts")
                if thread is not None:
                    self._finished.setdefault(str(thread), call.at)
        self._seen = len(calls)
        return self._finished.get(ts)

    def reply_text(self, ts: str) -> str:
        """What the bot's messages in the thread of `ts` say now."""
        return "\n".join(m["text"] for m in self.fake.messages.values() if m.get("thread_ts") == ts)

    def seconds(self, ts: str) -> float:
        done = self.finished_at(ts)
        if done is None:
            raise RuntimeError(f"no reply to event {ts}")
        return done - self.sent[ts]

    async def wait_finished(self, tss: list[str], timeout: float) -> None:
        """Until every event in `tss` has its final reply; TimeoutError names how many have not."""
        deadline = time.monotonic() + timeout
        pending = list(tss)
        while pending:
            pending = [ts for ts in pending if self.finished_at(ts) is None]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(tss)} events have no reply after {timeout:g} s")
            await asyncio.sleep(0.05)
