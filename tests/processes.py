"""Real processes for tests: `threadwise serve|worker`, `chroma run`, `redis-server`, on 127.0.0.1,
always cleaned up.

    with Processes(tmp_path) as procs:
        chroma, port = await procs.chroma()
        serve = procs.threadwise("serve-1", "serve", env={...})
        await until(lambda: ready(url), 30, serve)

Each process writes its output to a log file under the test's tmp_path (read it with `events()` for
threadwise's JSON logs); leaving the `with` block kills whatever still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot.settings import Settings

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def http_status(url: str, *, timeout: float = 3.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url) as response,
        ):
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def ready(base_url: str) -> bool:
    return await http_status(f"{base_url}/ready") == 200


class Process:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines (LOG_FORMAT=json), optionally only those of one event."""
        found = []
        for line in self.output().splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if event is None or record.get("event") == event:
                found.append(record)
        return found

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class Processes:
    """Starts processes and kills every one of them on exit, whatever happened."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Process] = []
        self.cwd = root / "cwd"  # no `.env` here: only the environment we pass counts
        self.cwd.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], *, env: Mapping[str, str] | None = None) -> Process:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv, cwd=self.cwd, env=dict(env or os.environ), stdout=out, stderr=subprocess.STDOUT
            )
        proc = Process(name, popen, log)
        self.started.append(proc)
        return proc

    async def chroma(self, *, port: int | None = None) -> tuple[Process, int]:
        """`chroma run` on 127.0.0.1, once its heartbeat answers."""
        port = port or free_port()
        argv = [str(VENV_BIN / "chroma"), "run", "--path", str(self.root / "chroma"), "--host", "127.0.0.1"]
        proc = self.start("chroma", [*argv, "--port", str(port)])
        heartbeat = f"http://127.0.0.1:{port}/api/v2/heartbeat"

        async def beating() -> bool:
            return await http_status(heartbeat) == 200

        await until(beating, 30, proc)
        return proc, port

    async def redis(self) -> str:
        """A redis-server of this test's own (no persistence) on 127.0.0.1; returns its URL.

        Nothing is shared with another test run on this machine, so nothing needs flushing.
        """
        port = free_port()
        argv = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        proc = self.start("redis", argv)
        url = f"redis://127.0.0.1:{port}/0"

        async def pong() -> bool:
            client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
            try:
                return bool(await client.ping())
            except RedisError:
                return False
            finally:
                await client.aclose()

        await until(pong, 10, proc)
        return url

    def threadwise(self, name: str, command: str, *, env: Mapping[str, str]) -> Process:
        return self.start(name, [str(VENV_BIN / "threadwise"), command], env=threadwise_env(env))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self.started:
            if proc.alive():
                proc.popen.kill()
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(10)


def threadwise_env(settings: Mapping[str, str]) -> dict[str, str]:
    """This environment without any threadwise setting, plus `settings`."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float, *watched: Process) -> None:
    """Poll `condition` without blocking the loop (fakes run on it); fail early, with its log, when a
    watched process dies meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if await result if inspect.isawaitable(result) else result:
            return
        for proc in watched:
            if not proc.alive():
                raise AssertionError(
                    f"{proc.name} exited ({proc.popen.returncode}):\n{proc.output()[-3000:]}"
                )
        await asyncio.sleep(0.1)
    logs = "\n".join(f"--- {p.name}:\n{p.output()[-2000:]}" for p in watched)
    raise AssertionError(f"not true within {timeout:g} s\n{logs}")
