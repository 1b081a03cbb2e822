"""Teams streaming in a personal chat: how soon the answer shows, and how many Bot Connector calls it takes.

    .venv/bin/python bench/stream_teams.py [--questions 20] [--tokens 60] [--seconds 3]

`threadwise serve`'s web app with the Teams platform runs in this process on 127.0.0.1, with the real
engine (embedding model, a scratch Chroma store holding one guide) and the real Groq SDK talking to the
fake Groq, which streams `--tokens` tokens over `--seconds` s; botbuilder replies to the fake Bot
Connector, which speaks Teams' streaming protocol (and answers 429 to text updates under 0.9 s apart).
Questions are personal-chat messages POSTed to /api/messages one after the other (no app id: the
Emulator set-up with Teams' channel id, so no token is checked — authentication is not measured here).

For each answer:

- first text: from the model's first token leaving the fake Groq to the first streamed chunk with text
  reaching the fake connector (goal p95 ≤ 300 ms);
- connector calls per 0.5 s of streaming: every call for the answer (informative update, chunks,
  final message) divided by the time from the first token to the final message, in half-seconds
  (goal ≤ 1).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time

import aiohttp
from _common import machine_note, model_engine, percentile, summary_ms
from aiohttp import web

from bot.compose import build_service
from bot.logsetup import configure_logging
from bot.teams.platform import teams
from tests.bot.teams.activities import TENANT, personal_message
from tests.fakes.bot_connector import Call, FakeBotConnector
from tests.fakes.groq_server import FakeGroq

KB = f"teams-{TENANT}"
GUIDE = (
    b"# VPN guide\n\n## Certificates\n\nTo rotate the VPN certificate, open the Keychain app and delete the "
    b"old certificate. Then download the new certificate from the IT portal and double-click it.\n"
)
GOAL_FIRST_TEXT_MS = 300.0
GOAL_CALLS_PER_HALF_SECOND = 1.0


def answer_text(tokens: int) -> str:
    words = ("Open the Keychain app, delete the old certificate, then download the new one " * tokens).split()
    return " ".join(words[: tokens - 1]) + " [1]."


async def main(questions: int, tokens: int, seconds: float) -> int:
    configure_logging(level="WARNING")
    note = machine_note()
    groq = FakeGroq(default_text=answer_text(tokens), token_delay=seconds / max(tokens - 1, 1))
    async with FakeBotConnector(tenant=TENANT) as fake, groq:
        store = tempfile.mkdtemp(prefix="threadwise-bench-teams-")
        limits = {"rate_limit_requests_per_minute": 100000, "rate_limit_burst": 100000}
        engine, settings = await model_engine(store, groq.base_url, kb=KB, guide=GUIDE, **limits)
        service = build_service(settings, engine, platforms=[teams(login_url=fake.login_url)])
        first_text, per_half_second, calls = await _run(service.app, service.chat, fake, groq, questions)
    print(
        f"Teams streaming, personal chat: {questions} answers of {tokens} tokens over {seconds:g} s; {note}"
    )
    print(f"  first token → first streamed text at the connector: {summary_ms(first_text)}")
    print(
        f"  connector calls per answer: {statistics.mean(calls):.1f} (min {min(calls)}, max {max(calls)}); "
        f"per 0.5 s of streaming: mean {statistics.mean(per_half_second):.2f}, "
        f"max {max(per_half_second):.2f}"
    )
    p95 = percentile(first_text, 0.95)
    verdict = "met" if p95 <= GOAL_FIRST_TEXT_MS else "NOT met"
    print(f"  goal first text p95 ≤ {GOAL_FIRST_TEXT_MS:.0f} ms: {verdict} ({p95:.1f} ms)")
    worst = max(per_half_second)
    verdict = "met" if worst <= GOAL_CALLS_PER_HALF_SECOND else "NOT met"
    print(f"  goal ≤ {GOAL_CALLS_PER_HALF_SECOND:g} call per 0.5 s (every answer): {verdict}")
    return 0


async def _run(
    app: web.Application, chat: object, fake: FakeBotConnector, groq: FakeGroq, questions: int
) -> tuple[list[float], list[float], list[int]]:
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/messages"
    first_text: list[float] = []
    per_half_second: list[float] = []
    calls: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(questions + 1):  # the first is a warm-up, not counted
                measured = await _ask(
                    http, url, chat, fake, groq, f"How do I rotate the VPN certificate? #{n}"
                )
                if n:
                    first_text.append(measured[0])
                    per_half_second.append(measured[1])
                    calls.append(measured[2])
    finally:
        await runner.cleanup()
    return first_text, per_half_second, calls


async def _ask(
    http: aiohttp.ClientSession, url: str, chat: object, fake: FakeBotConnector, groq: FakeGroq, question: str
) -> tuple[float, float, int]:
    activity = personal_message(question, service_url=fake.service_url)
    sent = time.perf_counter()
    async with http.post(url, json=activity) as response:
        if response.status != 200:
            raise SystemExit(f"/api/messages answered HTTP {response.status}")
    await _until_final(fake, activity["id"])
    mine = [c for c in fake.calls if c.activity_id == activity["id"]]
    refused = [c for c in mine if not c.accepted]
    if refused:
        raise SystemExit(f"the connector refused {len(refused)} calls: {refused[0].status}")
    first_token = next(t for t in groq.first_tokens if t >= sent)
    shown = next(c for c in mine if _is_text_chunk(c))
    final = mine[-1]
    half_seconds = (final.at - first_token) / 0.5
    return (shown.at - first_token) * 1000, len(mine) / half_seconds, len(mine)


def _is_text_chunk(call: Call) -> bool:
    stream = call.stream or {}
    return stream.get("streamType") == "streaming" and bool(call.text)


async def _until_final(fake: FakeBotConnector, question_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(c.activity_id == question_id and c.type == "message" for c in fake.calls):
        if time.monotonic() > deadline:
            raise SystemExit(f"no answer to {question_id} after {timeout:g} s")
        await asyncio.sleep(0.02)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.questions, args.tokens, args.seconds)))
