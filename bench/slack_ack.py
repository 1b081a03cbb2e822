"""Slack ack latency under bursts of concurrent events, and the time until the placeholder shows.

    .venv/bin/python bench/slack_ack.py [--rounds 5] [--burst 20]

Each round sends `--burst` signed app_mention events at once to `threadwise serve`'s aiohttp app (a
real server on 127.0.0.1, the real engine on a scratch store, extractive answers) and measures:

- ack: from sending the request to its HTTP 200 (Slack's deadline is 3 s; the goal is p95 ≤ 100 ms);
- placeholder: from sending the request to the fake Slack receiving the chat.postMessage that puts
  "Searching your documents…" in the thread — what the asker waits for before seeing a reaction.

The answers are computed too (embedding, search), on threads, while later acks are being served: the
figures include that contention. Rounds are separated by waiting for every answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

import aiohttp
from _common import fake_slack, percentile, scratch_engine, serve_in_process, slack_env, summary_ms

from bot.core.text import THINKING
from bot.logsetup import configure_logging
from bot.platform import Inbound
from bot.settings import load_settings
from tests.bot.slack import payloads
from tests.fakes.slack_server import FakeSlack

KB = f"slack-{payloads.TEAM}"
GUIDE = (
    b"# VPN guide\n\n## Certificates\n\nTo rotate the VPN certificate, open the Keychain app and delete the "
    b"old certificate. Then download the new certificate from the IT portal and double-click it.\n"
)
GOAL_P95_MS = 100.0


async def main(rounds: int, burst: int) -> int:
    configure_logging(level="WARNING")  # a log line per event would be measured too
    async with fake_slack() as fake:
        store = tempfile.mkdtemp(prefix="threadwise-bench-slack-")
        env = {key.lower(): value for key, value in slack_env(fake).items()}
        settings = load_settings(
            chroma_persist_directory=store, llm_provider="extractive", slack_app_token=None, **env
        )
        engine = scratch_engine(store)
        await asyncio.to_thread(engine.embedder.load)
        await engine.ingest(KB, "vpn.md", GUIDE, uploader="bench")
        acks: list[float] = []
        placeholders: list[float] = []
        async with serve_in_process(settings, engine) as (url, platform), aiohttp.ClientSession() as http:
            await _round(http, url, fake, platform, burst, [], [])  # warm-up, not counted
            for _ in range(rounds):
                await _round(http, url, fake, platform, burst, acks, placeholders)
    print(f"Slack: {rounds} rounds of {burst} concurrent signed app_mention events, {os.cpu_count()} CPUs")
    print(f"  ack (request → HTTP 200):                  {summary_ms(acks)}  max={max(acks):.1f} ms")
    print(f"  placeholder (request → chat.postMessage):  {summary_ms(placeholders)}")
    p95 = percentile(acks, 0.95)
    verdict = "met" if p95 <= GOAL_P95_MS else "NOT met"
    print(f"  goal ack p95 ≤ {GOAL_P95_MS:.0f} ms: {verdict} ({p95:.1f} ms)")
    return 0


async def _round(
    http: aiohttp.ClientSession,
    url: str,
    fake: FakeSlack,
    platform: Inbound,
    burst: int,
    acks: list[float],
    placeholders: list[float],
) -> None:
    bodies = [
        payloads.app_mention(f"How do I rotate the VPN certificate? #{n}", user=f"W{n:04d}")
        for n in range(burst)
    ]
    sent: dict[str, float] = {}

    async def send(body: dict[str, object]) -> None:
        raw = json.dumps(body).encode()
        headers = payloads.signed_headers(raw, content_type="application/json")
        sent[body["event"]["ts"]] = started = time.perf_counter()  # type: ignore[index]
        async with http.post(url, data=raw, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        acks.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(send(b) for b in bodies))
    await platform.drain()
    for call in fake.calls_to("chat.postMessage"):
        started_at = sent.get(str(call.params.get("thread_ts")))
        if started_at is not None and call.params.get("text") == THINKING:
            placeholders.append((call.at - started_at) * 1000)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.rounds, args.burst)))
