"""deploy/teams: the app manifest, its icons and the package command."""

from __future__ import annotations

import importlib.util
import json
import struct
import zipfile
import zlib
from pathlib import Path
from types import ModuleType

from bot.core.commands import COMMANDS
from tests.bot.teams.activities import APP_ID

TEAMS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "teams"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"teams_{name}", TEAMS_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


package = _script("package")
# The `required` list of the Teams app manifest schema (v1.17).
SCHEMA_REQUIRED = {
    "manifestVersion",
    "version",
    "id",
    "developer",
    "name",
    "description",
    "icons",
    "accentColor",
}


def test_the_manifest_has_the_schemas_required_fields_and_is_valid_once_filled_in() -> None:
    manifest = package.render(app_id=APP_ID, domain="bot.example.com")

    assert manifest.keys() >= SCHEMA_REQUIRED
    assert set(package.REQUIRED) == SCHEMA_REQUIRED  # what package.py checks before zipping
    assert manifest["$schema"].endswith(f"/v{manifest['manifestVersion']}/MicrosoftTeams.schema.json")
    assert package.problems(manifest) == []
    assert manifest["validDomains"] == ["bot.example.com"]


def test_the_bot_is_in_every_scope_takes_files_and_lists_the_core_commands() -> None:
    (bot,) = package.render(app_id=APP_ID, domain="bot.example.com")["bots"]

    assert bot["botId"] == APP_ID
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert bot["supportsFiles"] is True
    for command_list in bot["commandLists"]:
        assert [c["title"] for c in command_list["commands"]] == list(COMMANDS)


def test_mistakes_are_reported() -> None:
    manifest = package.render(app_id="not-a-guid", domain="https://bot.example.com/")
    manifest["bots"][0]["scopes"].append("meetings")
    del manifest["accentColor"]

    assert package.problems(manifest) == ["missing accentColor"]
    manifest["accentColor"] = "#3B5BDB"
    found = package.problems(manifest)
    assert any("not a GUID" in p for p in found)
    assert any("scopes" in p for p in found)
    assert any("validDomains" in p for p in found)


def test_the_package_is_a_zip_with_the_manifest_and_icons_at_its_root(tmp_path: Path) -> None:
    out = tmp_path / "threadwise-teams.zip"

    assert package.main(["--app-id", APP_ID, "--domain", "bot.example.com", "--out", str(out)]) == 0

    with zipfile.ZipFile(out) as zipped:
        assert sorted(zipped.namelist()) == ["color.png", "manifest.json", "outline.png"]
        assert json.loads(zipped.read("manifest.json"))["id"] == APP_ID
    assert package.main(["--app-id", "nope", "--domain", "bot.example.com", "--out", str(out)]) == 2


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGBA rows of a PNG written by make_icons (8-bit RGBA, filter 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    assert (depth, color_type) == (8, 6)
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * 4
    return width, height, [raw[i * stride + 1 : (i + 1) * stride] for i in range(height)]


def test_the_icons_have_teams_sizes_and_are_reproducible_from_the_script() -> None:
    icons = _script("make_icons")
    color, outline = (TEAMS_DIR / "color.png").read_bytes(), (TEAMS_DIR / "outline.png").read_bytes()

    assert _png_pixels(color)[:2] == (192, 192)
    width, height, rows = _png_pixels(outline)
    assert (width, height) == (32, 32)
    pixels = [row[i : i + 4] for row in rows for i in range(0, len(row), 4)]
    assert {p[:3] for p in pixels} == {b"\xff\xff\xff"}  # the outline icon: white on transparent only
    assert any(p[3] == 0 for p in pixels) and any(p[3] == 255 for p in pixels)
    assert icons.png(icons.color_icon()) == color
    assert icons.png(icons.outline_icon()) == outline
