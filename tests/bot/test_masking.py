"""Passwords and tokens inside URL settings never reach the terminal or the logs, in either form:
`user:password@host` or a query parameter (`?password=`, `?token=`, `?key=`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from tests.processes import free_port

SECRET = "s3cret"


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(tmp_path / "data" / "chroma"))
    clean_env.setenv("BACKUP_DIR", str(tmp_path / "data" / "backups"))
    return clean_env


def test_check_masks_every_credential_in_its_lines_and_its_debug_logs(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = free_port()  # nothing answers there: each check fails and says where it tried
    env.setenv("LOG_LEVEL", "DEBUG")
    env.setenv("SLACK_BOT_TOKEN", "xoxb-1-2-3")
    env.setenv("SLACK_API_URL", f"http://bot:{SECRET}A@127.0.0.1:{closed}/api/?token={SECRET}B")
    env.setenv("GROQ_API_KEY", "gsk_test")
    env.setenv("GROQ_BASE_URL", f"http://proxy:{SECRET}C@127.0.0.1:{closed}/openai/v1?key={SECRET}D")
    env.setenv("REDIS_URL", f"redis://127.0.0.1:{closed}/0?password={SECRET}E")

    assert main(["check"]) == 1

    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert SECRET not in printed, [line for line in printed.splitlines() if SECRET in line]
    out = captured.out
    assert f"SLACK_API_URL=http://bot:***@127.0.0.1:{closed}/api/?token=***" in out
    assert f"GROQ_BASE_URL=http://proxy:***@127.0.0.1:{closed}/openai/v1?key=***" in out
    assert f"REDIS_URL=redis://127.0.0.1:{closed}/0?password=***" in out


def test_a_redis_url_that_does_not_answer_stops_start_up_without_its_password(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = free_port()
    (tmp_path / "vpn.md").write_text("# VPN\n\nThe certificate expires every 90 days.\n")
    env.setenv("REDIS_URL", f"redis://127.0.0.1:{closed}/0?password={SECRET}")

    assert main(["ingest", str(tmp_path / "vpn.md")]) == 2

    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("threadwise:")]
    assert line.startswith(f"threadwise: REDIS_URL='redis://127.0.0.1:{closed}/0?password=***' is not usable")
    assert SECRET not in err
