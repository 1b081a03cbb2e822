"""`threadwise check` against the real SDKs talking to local fakes (Slack, Groq, Entra), real Redis, real
Chroma (embedded, and a port where no server listens), and the real embedding model."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.commands.check import run_check
from bot.settings import Settings
from bot.slack import platform as slack
from bot.teams.platform import teams
from rag.embed import SentenceEmbedder
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.groq_server import FakeGroq
from tests.fakes.slack_server import FakeSlack
from tests.redisdb import REDIS_URL, sync_client


@dataclass
class Fakes:
    slack: FakeSlack
    groq: FakeGroq
    entra: FakeBotConnector
    data: Path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "slack_bot_token": self.slack.bot_token,
            "slack_signing_secret": "secret",
            "slack_app_token": self.slack.app_token,
            "slack_api_url": self.slack.api_url,
            "microsoft_app_id": "3a8f-app",
            "microsoft_app_password": "fake-password",
            "groq_api_key": "gsk-test-key",
            "groq_base_url": self.groq.base_url,
            "chroma_persist_directory": str(self.data / "chroma"),
            "redis_url": REDIS_URL,
        }
        return Settings(**{**values, **overrides})

    async def check(self, settings: Settings) -> tuple[int, dict[str, tuple[str, str]], str]:
        out = io.StringIO()
        platforms = [slack.PLATFORM, teams(login_url=self.entra.login_url)]
        code = await run_check(settings, out=out, platforms=platforms)
        text = out.getvalue()
        lines = {}
        for line in text.split("\n\n")[0].splitlines():
            name, status, detail = (part.strip() for part in _split(line))
            lines[name] = (status, detail)
        return code, lines, text


def _split(line: str) -> list[str]:
    # "name<pad>  STATUS  detail": the status is the first of OK/FAIL/SKIP standing alone
    for status in ("OK", "FAIL", "SKIP"):
        marker = f"  {status}"
        if marker in line:
            name, _, rest = line.partition(marker)
            return [name, status, rest]
    raise AssertionError(line)


@pytest.fixture
async def fakes(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, embedder: SentenceEmbedder
) -> AsyncIterator[Fakes]:
    sync_client().close()  # Redis must answer: these tests are about it too
    async with FakeSlack() as slack, FakeGroq() as groq, FakeBotConnector() as entra:
        yield Fakes(slack, groq, entra, tmp_path / "data")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_every_dependency_answers(fakes: Fakes) -> None:
    code, lines, text = await fakes.check(fakes.settings())

    assert code == 0, text
    assert {name: status for name, (status, _) in lines.items()} == {
        "configuration": "OK",
        "slack": "OK",
        "slack socket mode": "OK",
        "teams": "OK",
        "groq": "OK",
        "chroma": "OK",
        "redis": "OK",
        "worker metrics": "SKIP",  # RUNNER=inprocess: no worker
        "embedding model": "OK",
    }
    assert "platforms: slack (socket mode), teams" in lines["configuration"][1]
    assert f"bot threadwise ({fakes.slack.bot_user_id})" in lines["slack"][1]
    assert "GROQ_MODEL=llama-3.3-70b-versatile" in lines["groq"][1]
    assert "0 knowledge bases" in lines["chroma"][1]
    assert "PING answered by Redis" in lines["redis"][1]
    assert "384 dimensions" in lines["embedding model"][1]
    assert text.rstrip().endswith("every configured dependency answers")
    assert sorted(c.method for c in fakes.slack.calls) == ["apps.connections.open", "auth.test"]
    assert fakes.entra.token_requests[0]["client_id"] == "3a8f-app"
    for secret in ("fake-password", "gsk-test-key", fakes.slack.bot_token, fakes.slack.app_token):
        assert secret not in text


async def test_each_failure_says_what_to_fix_and_the_exit_code_is_1(fakes: Fakes) -> None:
    dead = _closed_port()
    settings = fakes.settings(
        slack_bot_token="xoxb-revoked",
        slack_app_token="xapp-wrong",
        microsoft_app_password="an-old-secret",
        groq_model="llama-9-imaginary",
        chroma_host="127.0.0.1",
        chroma_port=dead,
        redis_url=f"redis://:hunter2@127.0.0.1:{dead}/0",
    )

    code, lines, text = await fakes.check(settings)

    assert code == 1
    failed = {name for name, (status, _) in lines.items() if status == "FAIL"}
    assert failed == {"slack", "slack socket mode", "teams", "groq", "chroma", "redis"}
    assert lines["slack"][1].startswith("Slack refused SLACK_BOT_TOKEN (invalid_auth): set it to")
    assert "OAuth & Permissions" in lines["slack"][1]
    assert lines["slack socket mode"][1].startswith("Slack refused SLACK_APP_TOKEN (invalid_auth)")
    assert "HTTP 401 invalid_client" in lines["teams"][1] and "MICROSOFT_APP_PASSWORD" in lines["teams"][1]
    assert "GROQ_MODEL=llama-9-imaginary is not offered" in lines["groq"][1]
    assert "llama-3.3-70b-versatile" in lines["groq"][1]  # what to choose instead
    assert f"Chroma server at 127.0.0.1:{dead}" in lines["chroma"][1] and "chroma run" in lines["chroma"][1]
    assert f"cannot reach REDIS_URL=redis://:***@127.0.0.1:{dead}/0" in lines["redis"][1]
    assert "hunter2" not in text
    assert lines["embedding model"][0] == "OK"
    assert text.rstrip().endswith("6 failed: slack, slack socket mode, teams, groq, chroma, redis")


async def test_unconfigured_dependencies_are_skipped_not_failed(fakes: Fakes) -> None:
    settings = fakes.settings(
        slack_bot_token=None,
        slack_app_token=None,
        microsoft_app_id=None,
        microsoft_app_password=None,
        groq_api_key=None,
        redis_url=None,
    )

    code, lines, _ = await fakes.check(settings)

    assert code == 0
    skipped = {name for name, (status, _) in lines.items() if status == "SKIP"}
    assert skipped == {"slack", "slack socket mode", "teams", "groq", "redis", "worker metrics"}
    assert "GROQ_API_KEY is not set" in lines["groq"][1]
    assert fakes.slack.calls == [] and fakes.groq.requests == []


async def test_an_embedded_store_held_by_another_process_is_named(fakes: Fakes) -> None:
    store = fakes.data / "chroma"
    store.mkdir(parents=True)
    holder = subprocess.Popen(  # what a running `threadwise serve` does to its store
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(store / '.threadwise.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
            "print('locked', flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, lines, _ = await fakes.check(fakes.settings(chroma_persist_directory=str(store)))
    finally:
        holder.kill()
        holder.wait()

    assert code == 1
    status, detail = lines["chroma"]
    assert status == "FAIL"
    assert f"in use by process {holder.pid}" in detail and "CHROMA_HOST" in detail


def test_a_configuration_that_does_not_validate_stops_before_any_check(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("RUNNER", "queue")

    assert main(["check"]) == 2
    assert "RUNNER=queue needs REDIS_URL" in capsys.readouterr().err
