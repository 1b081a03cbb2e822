"""Question latency while a big document is being ingested, beside the same figure on an idle service.

    .venv/bin/python bench/ingest_contention.py [--chunks 300] [--rate 2] [--idle 40] [--kb-docs 10]

The real path, in this process: `threadwise serve`'s web app with the Slack adapter and the in-process
runner, the fake Slack and a fake Groq (answers after `--llm-delay` s) on 127.0.0.1. Setup: a knowledge
base of `--kb-docs` covidqa articles, ingested directly (not measured). Then:

- idle: `--idle` distinct covidqa questions, sent as signed app_mention events at `--rate` per second;
- during: the same rate while a text document of about `--chunks` passages (other covidqa articles
  end to end, so none of its passages is in the embedding cache) is uploaded in the bot's DM and
  ingested — a file_share event, downloaded from the fake Slack. Questions sent between the upload
  and its "Added" reply count.

A question's latency runs from its event POST to the chat.update that puts the final answer in its
thread. Every question is asked once by its own user (the semantic query cache would answer a
repeat at once; the rate limit is set out of reach). Goal: p95 during ≤ 2 × p95 idle.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

import aiohttp
from _common import (
    KB,
    SlackDriver,
    covidqa,
    covidqa_questions,
    fake_slack,
    machine_note,
    percentile,
    serve_in_process,
    slack_env,
    summary_s,
)

from bot.compose import build_engine
from bot.logsetup import configure_logging
from bot.settings import load_settings
from rag import extract
from rag.chunk import chunk_document
from rag.engine import Engine
from tests.fakes.groq_server import FakeGroq

BIG_DOCUMENT = "big-report.txt"
GOAL_RATIO = 2.0


def big_document(engine: Engine, names: list[str], chunks: int) -> tuple[bytes, int, int]:
    """Articles from `names`, end to end, until they make about `chunks` passages. Returns the
    text, the number of passages and the number of articles used."""
    root = covidqa() / "docs"
    limits = engine.limits
    parts: list[bytes] = []
    made = 0
    for name in names:
        data = (root / name).read_bytes()
        doc = extract.extract(name, data, allowed_types=limits.allowed_types, max_bytes=limits.max_bytes)
        parts.append(data)
        made += len(chunk_document(doc, engine.embedder, max_tokens=limits.chunk_tokens))
        if made >= chunks:
            break
    return b"\n\n".join(parts), made, len(parts)


async def ask_at_rate(
    driver: SlackDriver, questions: list[str], rate: float, until: asyncio.Event | None, count: int
) -> list[str]:
    """Ask questions open-loop, one every 1/rate s (not waiting for answers), `count` of them or,
    with `until`, until it is set. Returns the events' ts."""
    sent: list[str] = []
    started = time.perf_counter()
    while (len(sent) < count) if until is None else not until.is_set():
        if not questions:
            raise SystemExit("ran out of distinct questions: lower --rate or --idle")
        sent.append(driver.ask(questions.pop(0), user=f"W{len(driver.sent):05d}"))
        next_at = started + len(sent) / rate
        while time.perf_counter() < next_at and not (until is not None and until.is_set()):
            await asyncio.sleep(min(0.02, max(0.0, next_at - time.perf_counter())))
    await driver.acked()
    return sent


async def main(args: argparse.Namespace) -> int:
    configure_logging(level="WARNING")  # a log line per event would be measured too
    note = machine_note()
    docs = sorted(p.name for p in (covidqa() / "docs").iterdir())
    kb_docs, other_docs = docs[: args.kb_docs], docs[args.kb_docs :]
    questions = covidqa_questions(set(kb_docs))
    questions += [q for q in covidqa_questions() if q not in set(questions)]
    async with fake_slack() as slack, FakeGroq(delay=args.llm_delay) as groq:
        env = slack_env(slack)
        settings = load_settings(
            chroma_persist_directory=tempfile.mkdtemp(prefix="threadwise-bench-contention-"),
            chroma_host=None,
            llm_provider="groq",
            groq_api_key="bench",
            groq_base_url=groq.base_url,
            slack_bot_token=env["SLACK_BOT_TOKEN"],
            slack_signing_secret=env["SLACK_SIGNING_SECRET"],
            slack_app_token=None,
            slack_api_url=env["SLACK_API_URL"],
            rate_limit_requests_per_minute=int(env["RATE_LIMIT_REQUESTS_PER_MINUTE"]),
            rate_limit_burst=int(env["RATE_LIMIT_BURST"]),
        )
        stages: list[tuple[float, str, float]] = []  # (when, stage, seconds) of every engine step
        engine = build_engine(
            settings, stage_observer=lambda *step: stages.append((time.perf_counter(), *step))
        )
        setup = time.perf_counter()
        await asyncio.to_thread(engine.embedder.load)
        for name in kb_docs:
            await engine.ingest(KB, name, (covidqa() / "docs" / name).read_bytes(), uploader="bench")
        kb_chunks = (await engine.stats(KB)).chunks
        data, big_chunks, articles = await asyncio.to_thread(big_document, engine, other_docs, args.chunks)
        async with serve_in_process(settings, engine) as (url, _), aiohttp.ClientSession() as http:
            while not engine.warmed:  # the service warms the engine in the background at start
                await asyncio.sleep(0.05)
            driver = SlackDriver(slack, http, [url])
            warm = await ask_at_rate(driver, questions, args.rate, None, 3)  # first calls: not counted
            await driver.wait_finished(warm, 60)
            setup_s = time.perf_counter() - setup

            idle_from = time.perf_counter()
            idle = await ask_at_rate(driver, questions, args.rate, None, args.idle)
            await driver.wait_finished(idle, 120)
            idle_to = time.perf_counter()

            ingested = asyncio.Event()
            upload = driver.upload([(BIG_DOCUMENT, data)])

            async def watch() -> None:
                await driver.wait_finished([upload], 600)
                ingested.set()

            watcher = asyncio.create_task(watch())
            during = await ask_at_rate(driver, questions, args.rate, ingested, 0)
            await watcher
            await driver.wait_finished(during, 120)
            ingest_s = driver.seconds(upload)
            during = [ts for ts in during if driver.sent[ts] < driver.sent[upload] + ingest_s]
            reply = driver.reply_text(upload)
        not_answered = [ts for ts in idle + during if "fake model" not in driver.reply_text(ts)]
    if "Added" not in reply:
        print(f"the upload was not ingested: {reply!r}")
        return 1
    idle_s = [driver.seconds(ts) for ts in idle]
    during_s = [driver.seconds(ts) for ts in during]
    ratio = percentile(during_s, 0.95) / percentile(idle_s, 0.95)
    print(f"ingest contention — {' '.join(sys.argv[1:]) or '(defaults)'}; {note}")
    print(f"  setup: KB of {args.kb_docs} covidqa articles ({kb_chunks} passages), warm-up; {setup_s:.0f} s")
    print(
        f"  upload: {BIG_DOCUMENT}, {articles} other articles, {big_chunks} passages, "
        f"{len(data) // 1024} KiB; ingested in {ingest_s:.1f} s ({big_chunks / ingest_s:.1f} passages/s)"
        " while questions ran"
    )
    print(
        f"  questions at {args.rate:g}/s, fake LLM delay {args.llm_delay:g} s; "
        "latency = event POST → final chat.update:"
    )
    print(f"    idle:          {summary_s(idle_s)}")
    print(f"    during ingest: {summary_s(during_s)}  max={max(during_s):.2f} s")
    asked = len(idle) + len(during)
    print(
        f"  answered by the (fake) model: {asked - len(not_answered)} of {asked}"
        " (the others: no passage close enough, or the extractive fallback)"
    )
    during_from, during_to = driver.sent[upload], driver.sent[upload] + ingest_s
    print(
        "  median per engine step (idle | during ingest):  "
        + "  ".join(
            f"{stage} {_median_ms(stages, stage, idle_from, idle_to)} | "
            f"{_median_ms(stages, stage, during_from, during_to)} ms"
            for stage in ("embed", "search", "llm")
        )
    )
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"  goal p95 during ≤ {GOAL_RATIO:g} × p95 idle: {verdict} (ratio {ratio:.2f})")
    return 0


def _median_ms(stages: list[tuple[float, str, float]], stage: str, start: float, end: float) -> str:
    """The median of a question's step: the ingest's own steps are a few long ones among many."""
    values = [s for at, name, s in stages if name == stage and start <= at <= end]
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=300, help="passages in the uploaded document (about)")
    parser.add_argument("--rate", type=float, default=2.0, help="questions per second, in both phases")
    parser.add_argument("--idle", type=int, default=40, help="questions in the idle phase")
    parser.add_argument("--kb-docs", type=int, default=10, help="covidqa articles in the knowledge base")
    parser.add_argument("--llm-delay", type=float, default=0.0, help="the fake model's delay, seconds")
    sys.exit(asyncio.run(main(parser.parse_args())))
