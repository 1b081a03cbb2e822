"""Answers streamed into Slack: how soon the first words show, how many Web API calls an answer makes,
and whether 20 answers streamed at once stay inside Slack's rate tiers.

    .venv/bin/python bench/stream_slack.py [--answers 10] [--burst 20]

`threadwise serve`'s web app in this process (the real engine on a scratch store, RUNNER=inprocess)
answers signed app_mention events with the Groq fake writing 60 tokens over 3 s, through the real
Slack SDK against the fake Slack. Measured:

- first text: from the fake model's first token to the fake Slack receiving the call that shows the
  first answer text in the thread (chat.startStream; with streaming refused, the first chat.update of
  the placeholder: today's way) — goal p95 ≤ 300 ms;
- calls: Web API calls from the first token to the final reply, per 0.5 s of streaming — goal ≤ 1,
  streamed and (streaming refused) edited in place side by side;
- burst: `--burst` questions at once against a fake Slack that answers 429 beyond each method's
  documented tier — goal: no 429, and every answer one complete message (its first-text p95 pairs
  the n-th first token with the n-th chat.startStream: an approximation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import dataclass

import aiohttp
from _common import (
    fake_slack,
    machine_note,
    model_engine,
    percentile,
    serve_in_process,
    slack_env,
    summary_ms,
)

from bot.logsetup import configure_logging
from bot.settings import load_settings
from rag.engine import Engine
from tests.bot.slack import payloads
from tests.fakes.groq_server import FakeGroq
from tests.fakes.slack_server import FakeSlack

KB = f"slack-{payloads.TEAM}"
GUIDE = (
    b"# VPN guide\n\n## Certificates\n\nTo rotate the VPN certificate, open the Keychain app and delete the "
    b"old certificate. Then download the new certificate from the IT portal and double-click it.\n"
)
TOKENS = 60
STREAM_S = 3.0
ANSWER = " ".join(f"word{n}" for n in range(TOKENS - 1)) + " [1]."  # 60 deltas: a word and its space
SHOWN = {"chat.startStream", "chat.update"}  # the calls that can put answer text in the thread first
GOAL_FIRST_MS, GOAL_CALLS = 300.0, 1.0


@dataclass
class Run:
    first_text_ms: list[float]
    calls_per_half_s: list[float]
    calls_per_answer: list[int]


async def main(answers: int, burst: int) -> int:
    configure_logging(level="WARNING")
    print(f"Slack streaming: {TOKENS} tokens over {STREAM_S:g} s per answer; {machine_note()}")
    streamed = await _sequential(answers, refuse=False)
    edited = await _sequential(answers, refuse=True)
    for name, run in (("streamed (chat.*Stream)", streamed), ("edited in place (today)", edited)):
        print(f"  {name}:")
        print(f"    first token → first answer text in Slack:  {summary_ms(run.first_text_ms)}")
        calls = run.calls_per_half_s
        print(
            f"    Web API calls per answer: {sum(run.calls_per_answer) / len(run.calls_per_answer):.1f}; "
            f"per 0.5 s of streaming: mean {sum(calls) / len(calls):.2f}, max {max(calls):.2f}"
        )
    limited, complete, p95 = await _burst(burst)
    first = percentile(streamed.first_text_ms, 0.95)
    per_half = max(streamed.calls_per_half_s)
    print(f"  burst of {burst} answers at once, tiers enforced: {len(limited)} answered 429 {limited or ''}")
    print(f"    {complete}/{burst} threads hold exactly one complete answer; first text p95 {p95:.1f} ms")
    print(f"  goal first text p95 ≤ {GOAL_FIRST_MS:.0f} ms: {'met' if first <= GOAL_FIRST_MS else 'NOT met'}")
    verdict = "met" if per_half <= GOAL_CALLS else "NOT met"
    print(f"  goal ≤ {GOAL_CALLS:g} call per 0.5 s: {verdict} ({per_half:.2f})")
    print(f"  goal no 429 in the burst: {'met' if not limited and complete == burst else 'NOT met'}")
    return 0


async def _engine(store: str, groq: FakeGroq, slack: FakeSlack) -> tuple[Engine, dict[str, str]]:
    env = {key.lower(): value for key, value in slack_env(slack).items()}
    # query_cache_size=0: every question answered by the model, none from the cache
    engine, _ = await model_engine(
        store, groq.base_url, kb=KB, guide=GUIDE, slack_app_token=None, query_cache_size=0, **env
    )
    return engine, env


async def _sequential(answers: int, *, refuse: bool) -> Run:
    """`answers` questions one after another: each answer's calls are its own."""
    run = Run([], [], [])
    async with (
        fake_slack() as slack,
        FakeGroq(default_text=ANSWER, token_delay=STREAM_S / (TOKENS - 1)) as groq,
    ):
        if refuse:
            slack.refuse_streaming("not_allowed")
        store = tempfile.mkdtemp(prefix="threadwise-bench-stream-")
        engine, env = await _engine(store, groq, slack)
        settings = load_settings(chroma_persist_directory=store, llm_provider="groq", **env)
        async with serve_in_process(settings, engine) as (url, platform), aiohttp.ClientSession() as http:
            for n in range(answers + 1):  # the first one warms up, not counted
                mark = len(slack.calls)
                await _send(http, url, payloads.app_mention(f"How do I rotate the VPN certificate? #{n}"))
                await platform.drain()
                if n:
                    _measure(run, slack, mark, groq.first_tokens[-1], refused=refuse)
    return run


def _measure(run: Run, slack: FakeSlack, mark: int, first_token: float, *, refused: bool) -> None:
    """Today's way is measured without the refused chat.startStream that sends it there."""
    calls = [c for c in slack.calls[mark:] if c.at >= first_token]
    if refused:
        calls = [c for c in calls if c.method != "chat.startStream"]
    if not any(
        c.method in SHOWN and (c.params.get("markdown_text") or "▌" in str(c.params.get("text")))
        for c in calls
    ):
        raise RuntimeError(
            f"no answer text shown: {[(c.method, str(c.params)[:80]) for c in slack.calls[mark:]]}"
        )
    shown = next(
        c
        for c in calls
        if c.method in SHOWN and (c.params.get("markdown_text") or "▌" in str(c.params.get("text")))
    )
    run.first_text_ms.append((shown.at - first_token) * 1000)
    streaming_s = calls[-1].at - first_token
    run.calls_per_answer.append(len(calls))
    run.calls_per_half_s.append(len(calls) / max(streaming_s / 0.5, 1.0))


async def _burst(burst: int) -> tuple[list[str], int, float]:
    async with (
        fake_slack() as slack,
        FakeGroq(default_text=ANSWER, token_delay=STREAM_S / (TOKENS - 1)) as groq,
    ):
        store = tempfile.mkdtemp(prefix="threadwise-bench-stream-burst-")
        engine, env = await _engine(store, groq, slack)
        settings = load_settings(chroma_persist_directory=store, llm_provider="groq", **env)
        slack.enforce_tiers()
        bodies = [
            payloads.app_mention(f"How do I rotate the VPN certificate? #{n}", user=f"W{n:04d}")
            for n in range(burst)
        ]
        async with serve_in_process(settings, engine) as (url, platform), aiohttp.ClientSession() as http:
            await asyncio.gather(*(_send(http, url, b) for b in bodies))
            await platform.drain()
        complete = sum(1 for b in bodies if _one_complete_answer(slack, b["event"]["ts"]))
        starts = sorted(c.at for c in slack.calls_to("chat.startStream"))
        firsts = sorted(groq.first_tokens)
        p95 = (
            percentile([(s - f) * 1000 for s, f in zip(starts, firsts, strict=False)], 0.95)
            if starts
            else float("nan")
        )
        return slack.limited, complete, p95


def _one_complete_answer(slack: FakeSlack, thread_ts: str) -> bool:
    thread = slack.thread(payloads.CHANNEL, thread_ts)
    return (
        len(thread) == 1
        and "[1]." in thread[0]["text"]
        and "context_actions" in json.dumps(thread[0]["blocks"])
    )


async def _send(http: aiohttp.ClientSession, url: str, body: dict[str, object]) -> None:
    raw = json.dumps(body).encode()
    async with http.post(
        url, data=raw, headers=payloads.signed_headers(raw, content_type="application/json")
    ) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.answers, args.burst)))
