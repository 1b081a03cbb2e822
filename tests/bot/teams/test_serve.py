"""`threadwise serve` mounts Teams by the rule in Settings.teams_enabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.serve_cli import configured_platforms, require_credentials
from bot.settings import load_settings
from bot.teams.platform import TeamsPlatform
from rag.errors import ConfigError
from tests.bot.teams.activities import APP_ID


def test_production_without_an_app_id_has_no_teams_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")

    assert [p.name for p in configured_platforms(load_settings())] == []


def test_production_without_any_credentials_refuses_to_serve(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    settings = load_settings()

    with pytest.raises(ConfigError, match="ENVIRONMENT=production needs credentials"):
        require_credentials(settings, configured_platforms(settings))


def test_threadwise_serve_in_production_without_credentials_exits_2(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(tmp_path / "chroma"))

    assert main(["serve"]) == 2
    assert "MICROSOFT_APP_ID" in capsys.readouterr().err


def test_an_app_id_mounts_an_authenticated_teams_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    clean_env.setenv("MICROSOFT_APP_ID", APP_ID)
    clean_env.setenv("MICROSOFT_APP_PASSWORD", "fake-password")

    (teams,) = configured_platforms(load_settings())

    assert isinstance(teams, TeamsPlatform)
    assert teams.authenticated


def test_development_mounts_teams_for_the_emulator(clean_env: pytest.MonkeyPatch) -> None:
    (teams,) = configured_platforms(load_settings())

    assert isinstance(teams, TeamsPlatform)
    assert not teams.authenticated
