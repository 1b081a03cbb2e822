"""Answered questions per second with a fake LLM that takes 500 ms: in-process, and in queue mode.

    .venv/bin/python bench/answer_throughput.py [--questions 200] [--llm-delay 0.5]
        [--modes inprocess,queue1,queue2] [--worker-concurrency 16]

Real processes on 127.0.0.1, driven the way Slack drives them: the fake Slack and a fake Groq (every
answer starts after `--llm-delay` s) run in this process; `threadwise serve` and `threadwise worker`
are the installed command. Setup (not measured): `threadwise ingest` puts the covidqa articles with
the most questions into the workspace's knowledge base, in an embedded store that `chroma run`
serves later for queue mode.

- inprocess: one `threadwise serve` (RUNNER=inprocess) on that embedded store;
- queue1 / queue2: `chroma run` on the same files, one `threadwise serve` (RUNNER=queue) and one or
  two `threadwise worker` (WORKER_CONCURRENCY=`--worker-concurrency`), Redis at `--redis-url` (a
  database of its own: it is emptied before each run).

Each run sends 5 warm-up questions, then `--questions` distinct covidqa questions at once as signed
app_mention events, each from its own user (the rate limit is per user, and set out of reach), and
waits for every final answer. Throughput = questions / (first event POST → last final chat.update).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis
from _common import (
    SlackDriver,
    covidqa,
    covidqa_questions,
    cpu_seconds,
    fake_slack,
    machine_note,
    slack_env,
    summary_s,
    threadwise_ingest,
)

from tests.fakes.groq_server import FakeGroq
from tests.fakes.slack_server import FakeSlack
from tests.processes import Process, Processes, free_port, ready, until

GOAL_QPS = 20.0
WARM_UP = 5
MODES = ("inprocess", "queue1", "queue2")


def kb_documents(needed: int) -> list[str]:
    """The covidqa articles with the most questions, enough of them for `needed` distinct questions."""
    rows = [json.loads(line) for line in (covidqa() / "qa.jsonl").read_text().splitlines()]
    per_doc = Counter(r["source"] for r in rows)
    chosen: list[str] = []
    for name, _ in per_doc.most_common():
        chosen.append(name)
        if len(covidqa_questions(set(chosen))) >= needed:
            return chosen
    raise SystemExit(f"covidqa has fewer than {needed} questions: lower --questions")


@dataclass
class Run:
    qps: float
    seconds: list[float]  # each question's, event POST → final answer
    cpu_ms: dict[str, float]  # CPU time per question, by process


async def measure(driver: SlackDriver, questions: list[str], count: int, processes: dict[str, int]) -> Run:
    """`count` questions sent at once, after a warm-up. `processes`: name → pid, whose CPU time is
    counted (this process's too: the fakes run in it)."""
    warm = [driver.ask(questions.pop(0), user=f"WARM{n}") for n in range(WARM_UP)]
    await driver.wait_finished(warm, 120)
    processes = {**processes, "bench (fakes)": os.getpid()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    burst = [driver.ask(questions.pop(0), user=f"W{n:05d}") for n in range(count)]
    await driver.acked()
    await driver.wait_finished(burst, 600)
    cpu_ms = {name: (cpu_seconds(pid) - cpu_before[name]) * 1000 / count for name, pid in processes.items()}
    first = min(driver.sent[ts] for ts in burst)
    last = max(driver.sent[ts] + driver.seconds(ts) for ts in burst)
    return Run(count / (last - first), [driver.seconds(ts) for ts in burst], cpu_ms)


def stop_all(procs: list[Process]) -> None:
    for proc in procs:
        if proc.alive():
            proc.signal(signal.SIGTERM)
    for proc in procs:
        proc.stop()


def workers_of(mode: str) -> int:
    return 0 if mode == "inprocess" else int(mode.removeprefix("queue"))


async def run_mode(
    mode: str,
    procs: Processes,
    slack: FakeSlack,
    base: dict[str, str],
    args: argparse.Namespace,
    questions: list[str],
) -> Run:
    port = free_port()
    env = {**base, "HOST": "127.0.0.1", "PORT": str(port)}
    started: list[Process] = []
    if mode == "inprocess":
        env["RUNNER"] = "inprocess"
    else:
        chroma_port = free_port()
        chroma, _ = await procs.chroma(port=chroma_port)  # serves <root>/chroma: the ingested store
        started.append(chroma)
        client = redis.Redis.from_url(args.redis_url)
        client.flushdb()
        client.close()
        env.update(
            RUNNER="queue",
            REDIS_URL=args.redis_url,
            CHROMA_HOST="127.0.0.1",
            CHROMA_PORT=str(chroma_port),
            WORKER_CONCURRENCY=str(args.worker_concurrency),
            WORKER_METRICS_PORT="0",
        )
        env.pop("CHROMA_PERSIST_DIRECTORY")
    serve = procs.threadwise(f"{mode}-serve", "serve", env=env)
    started.append(serve)
    workers = [procs.threadwise(f"{mode}-worker-{n}", "worker", env=env) for n in range(workers_of(mode))]
    started += workers
    try:
        url = f"http://127.0.0.1:{port}"
        await until(lambda: ready(url), 300, *started)
        await until(lambda: all(w.events("worker_ready") for w in workers), 300, *started)
        async with aiohttp.ClientSession() as http:
            driver = SlackDriver(slack, http, [f"{url}/slack/events"])
            return await measure(driver, questions, args.questions, {p.name: p.pid for p in started})
    finally:
        stop_all(started)


async def main(args: argparse.Namespace) -> int:
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        raise SystemExit(f"unknown mode(s) {sorted(unknown)}: choose from {', '.join(MODES)}")
    note = machine_note()
    needed = (args.questions + WARM_UP) * len(modes)
    docs = kb_documents(needed)
    questions = covidqa_questions(set(docs))
    results: dict[str, Run] = {}
    root = Path(tempfile.mkdtemp(prefix="threadwise-bench-throughput-"))
    async with fake_slack() as slack, FakeGroq(delay=args.llm_delay) as groq:
        base = {
            **slack_env(slack),
            "LLM_PROVIDER": "groq",
            "GROQ_API_KEY": "bench",
            "GROQ_BASE_URL": groq.base_url,
            "LOG_FORMAT": "json",
            "CHROMA_PERSIST_DIRECTORY": str(root / "chroma"),  # what procs.chroma() serves
        }
        with Processes(root) as procs:
            ingest_s = await threadwise_ingest(procs, base, [covidqa() / "docs" / name for name in docs])
            for mode in modes:
                results[mode] = await run_mode(mode, procs, slack, base, args, questions)
        llm_calls = len(groq.requests)
    print(f"answer throughput — {' '.join(sys.argv[1:]) or '(defaults)'}; {note}")
    print(
        f"  setup: {len(docs)} covidqa articles ingested by `threadwise ingest` in {ingest_s:.0f} s; "
        f"fake LLM delay {args.llm_delay:g} s; {llm_calls} LLM calls in all"
    )
    print(f"  {args.questions} distinct questions sent at once, each by its own user; logs in {root}")
    for mode, run in results.items():
        shape = (
            "in-process runner"
            if mode == "inprocess"
            else (f"{workers_of(mode)} worker(s) × concurrency {args.worker_concurrency}")
        )
        print(f"  {mode:9} ({shape}): {run.qps:5.1f} answered questions/s; latency {summary_s(run.seconds)}")
        cpu = ", ".join(f"{name} {ms:.0f}" for name, ms in run.cpu_ms.items())
        print(f"            CPU ms per question: {cpu}")
    if "inprocess" in results:
        qps = results["inprocess"].qps
        print(f"  goal ≥ {GOAL_QPS:g} q/s in-process: {'met' if qps >= GOAL_QPS else 'NOT met'} ({qps:.1f})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200, help="questions per run, sent at once")
    parser.add_argument("--llm-delay", type=float, default=0.5, help="the fake model's delay, seconds")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument(
        "--worker-concurrency", type=int, default=16, help="WORKER_CONCURRENCY of each worker"
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/13", help="emptied before each queue run"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
