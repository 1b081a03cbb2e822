"""Resident memory of a real `threadwise serve` that holds covidqa (95 articles, ~2,700 passages).

    .venv/bin/python bench/serve_memory.py [--ingest upload|cli] [--docs 95] [--questions 50]

`threadwise serve` (RUNNER=inprocess, embedded Chroma, the fake Slack and a fake Groq in this process)
gets the covidqa articles one of two ways:

- upload (default): through the running serve, as people add documents — file_share events in the
  bot's DM, 10 files per message (Slack's most), each message after the previous one's reply. The
  serve downloads, parses, embeds and stores them itself, so its peak includes ingesting.
- cli: `threadwise ingest` into the store first, then the serve starts on it (warming the keyword
  index at start-up); its peak is that of serving alone.

Then `--questions` distinct covidqa questions are asked and answered (the keyword index, the query
path and the model all in use). Memory is read from /proc/PID/status: VmRSS (resident now; RssAnon
is the process's own heap, RssFile the mapped libraries and files) and VmHWM (the peak). Goal: ≤ 1 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _common import (
    SlackDriver,
    covidqa,
    covidqa_questions,
    fake_slack,
    machine_note,
    slack_env,
    threadwise_ingest,
)

from tests.fakes.groq_server import FakeGroq
from tests.processes import Process, Processes, free_port, ready, until

GOAL_MB = 1024
FILES_PER_MESSAGE = 10  # Slack's limit for one message
FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def memory_mb(pid: int) -> dict[str, float]:
    """The FIELDS of /proc/PID/status, in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in FIELDS:
            found[name] = int(value.split()[0]) / 1024  # kB
    return found


def shown(mb: dict[str, float]) -> str:
    return "  ".join(f"{name} {mb[name]:6.0f} MiB" for name in FIELDS)


async def upload_all(driver: SlackDriver, files: list[Path]) -> None:
    for start in range(0, len(files), FILES_PER_MESSAGE):
        group = files[start : start + FILES_PER_MESSAGE]
        ts = driver.upload([(f.name, f.read_bytes()) for f in group])
        await driver.wait_finished([ts], 900)
        reply = driver.reply_text(ts)
        if reply.count("Added") != len(group):
            raise SystemExit(f"not every file was added:\n{reply}")


async def main(args: argparse.Namespace) -> int:
    note = machine_note()
    files = sorted(p for p in (covidqa() / "docs").iterdir() if p.is_file())[: args.docs]
    questions = covidqa_questions({f.name for f in files})[: args.questions]
    root = Path(tempfile.mkdtemp(prefix="threadwise-bench-memory-"))
    stages: list[tuple[str, dict[str, float]]] = []
    async with fake_slack() as slack, FakeGroq() as groq:
        port = free_port()
        env = {
            **slack_env(slack),
            "LLM_PROVIDER": "groq",
            "GROQ_API_KEY": "bench",
            "GROQ_BASE_URL": groq.base_url,
            "CHROMA_PERSIST_DIRECTORY": str(root / "store"),
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
        with Processes(root) as procs:
            started = time.perf_counter()
            if args.ingest == "cli":
                await threadwise_ingest(procs, env, files)
            serve: Process = procs.threadwise("serve", "serve", env=env)
            url = f"http://127.0.0.1:{port}"
            await until(lambda: ready(url), 600, serve)
            stages.append(
                ("ready" + (" (KB loaded)" if args.ingest == "cli" else ", empty"), memory_mb(serve.pid))
            )
            async with aiohttp.ClientSession() as http:
                driver = SlackDriver(slack, http, [f"{url}/slack/events"])
                if args.ingest == "upload":
                    await upload_all(driver, files)
                    stages.append((f"after {len(files)} uploads", memory_mb(serve.pid)))
                asked = []
                for n, question in enumerate(questions):  # one after another: a steady state
                    asked.append(driver.ask(question, user=f"W{n:05d}"))
                    await driver.wait_finished(asked[-1:], 120)
            stages.append((f"after {len(questions)} questions", memory_mb(serve.pid)))
            elapsed = time.perf_counter() - started
            answered = sum(1 for ts in asked if driver.reply_text(ts))
            serve.stop()
    peak = stages[-1][1]["VmHWM"]
    print(f"serve memory — {' '.join(sys.argv[1:]) or '(defaults)'}; {note}")
    how = "uploaded through the serve (Slack DM)" if args.ingest == "upload" else "`threadwise ingest` first"
    print(
        f"  {len(files)} covidqa articles {how}; {answered} of {len(questions)} questions answered;"
        f" {elapsed:.0f} s in all"
    )
    for stage, mb in stages:
        print(f"  {stage:24} {shown(mb)}")
    verdict = "met" if peak <= GOAL_MB else "NOT met"
    print(f"  goal peak (VmHWM) ≤ {GOAL_MB} MiB: {verdict} ({peak:.0f} MiB); logs in {root}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest", choices=["upload", "cli"], default="upload")
    parser.add_argument("--docs", type=int, default=95, help="how many covidqa articles (in name order)")
    parser.add_argument("--questions", type=int, default=50)
    sys.exit(asyncio.run(main(parser.parse_args())))
