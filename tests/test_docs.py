"""The docs say what the code does: every setting is in deploy/env.example and the README table."""

from __future__ import annotations

import re
from pathlib import Path

from bot.cli import build_parser
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (ROOT / "deploy" / "env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    assert listed == _setting_names()


def test_env_example_defaults_match_settings() -> None:
    text = (ROOT / "deploy" / "env.example").read_text()
    defaults = Settings.model_construct()
    for name, value in re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, flags=re.M):
        expected = getattr(defaults, name.lower())
        if isinstance(expected, list):
            expected = ",".join(expected)
        elif isinstance(expected, bool):
            expected = str(expected).lower()
        elif expected is None:
            expected = ""
        elif isinstance(expected, float) and expected.is_integer():
            expected = int(expected)
        assert value == str(expected), name


def test_readme_configuration_table_lists_every_setting() -> None:
    text = (ROOT / "README.md").read_text()
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", text, flags=re.M))
    assert table == _setting_names()


def test_readme_names_the_commands_the_cli_has() -> None:
    text = (ROOT / "README.md").read_text()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in sub.choices:  # type: ignore[union-attr]
        assert f"threadwise {command}" in text, command
    assert "make run" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
