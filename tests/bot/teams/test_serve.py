"""`threadwise serve` mounts Teams by the rule in Settings.teams_enabled."""

from __future__ import annotations

import pytest

from bot.serve_cli import configured_platforms
from bot.settings import load_settings
from bot.teams.platform import TeamsPlatform
from tests.bot.teams.activities import APP_ID


def test_production_without_an_app_id_has_no_teams_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")

    assert [p.name for p in configured_platforms(load_settings())] == []


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
