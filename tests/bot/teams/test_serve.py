"""`threadwise serve` mounts Teams by the rule in Settings.teams_enabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.commands.serve import require_credentials
from bot.platforms import enabled_platforms
from bot.settings import Settings, load_settings
from bot.teams.outbound import TeamsOutbound
from rag.errors import ConfigError
from tests.bot.teams.activities import APP_ID


def test_production_without_an_app_id_has_no_teams_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")

    assert [p.name for p in enabled_platforms(load_settings())] == []


def test_production_without_any_credentials_refuses_to_serve(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    settings = load_settings()

    with pytest.raises(ConfigError, match="ENVIRONMENT=production needs credentials"):
        require_credentials(settings)


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

    (teams,) = outbound(load_settings())

    assert isinstance(teams, TeamsOutbound)
    assert teams.authenticated


def test_development_mounts_teams_for_the_emulator(clean_env: pytest.MonkeyPatch) -> None:
    (teams,) = outbound(load_settings())

    assert isinstance(teams, TeamsOutbound)
    assert not teams.authenticated


def outbound(settings: Settings) -> list[object]:
    """The outbound parts `threadwise serve` would build for these settings."""
    return [p.outbound(settings) for p in enabled_platforms(settings)]
