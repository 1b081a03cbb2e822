"""Build the Teams app package: manifest.json and the two icons in one zip, to upload in Teams.

    make teams-package MICROSOFT_APP_ID=<the Azure Bot's app id> BOT_DOMAIN=bot.example.com
    python deploy/teams/package.py --app-id <app id> --domain bot.example.com [--out FILE]

The arguments default to the MICROSOFT_APP_ID and BOT_DOMAIN environment variables. The manifest is
checked against the rules of the Teams app manifest schema (v1.17) that a typo breaks: required fields,
id and version formats, lengths, scopes, the command list. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPLATE = HERE / "manifest.json"
DEFAULT_OUT = ROOT / "dist" / "threadwise-teams.zip"
REQUIRED = ("manifestVersion", "version", "id", "developer", "name", "description", "icons", "accentColor")
SCOPES = {"personal", "team", "groupChat"}
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
DOMAIN = re.compile(r"^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?$")


def render(*, app_id: str, domain: str, template: Path = TEMPLATE) -> dict[str, Any]:
    """The manifest with the deployment's app id and domain filled in."""
    text = template.read_text()
    for name, value in (("MICROSOFT_APP_ID", app_id), ("BOT_DOMAIN", domain)):
        text = text.replace("${" + name + "}", json.dumps(value)[1:-1])
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def problems(manifest: dict[str, Any], *, icons_dir: Path = HERE) -> list[str]:
    """What would make Teams refuse the package (empty when none)."""
    found = [f"missing {key}" for key in REQUIRED if key not in manifest]
    if found:
        return found
    _check(found, bool(GUID.match(manifest["id"])), f"id {manifest['id']!r} is not a GUID (the app id)")
    _check(found, bool(SEMVER.match(manifest["version"])), "version is not MAJOR.MINOR.PATCH")
    _check(found, bool(COLOR.match(manifest["accentColor"])), "accentColor is not #RRGGBB")
    _check(found, len(manifest["name"].get("short", "")) in range(1, 31), "name.short needs 1-30 characters")
    _check(found, len(manifest["name"].get("full", "")) <= 100, "name.full is over 100 characters")
    description = manifest["description"]
    _check(found, len(description.get("short", "")) in range(1, 81), "description.short needs 1-80 chars")
    _check(found, len(description.get("full", "")) in range(1, 4001), "description.full needs 1-4000 chars")
    developer = manifest["developer"]
    _check(found, len(developer.get("name", "")) in range(1, 33), "developer.name needs 1-32 characters")
    for key in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        _check(found, str(developer.get(key, "")).startswith("https://"), f"developer.{key} must be https")
    for key in ("color", "outline"):
        _check(found, (icons_dir / manifest["icons"].get(key, "?")).is_file(), f"icons.{key} file is missing")
    for bot in manifest.get("bots", []):
        _check(found, bot.get("botId") == manifest["id"], "bots[].botId differs from id (the app id)")
        _check(found, set(bot.get("scopes", [])) <= SCOPES, f"bots[].scopes must be among {sorted(SCOPES)}")
        lists = bot.get("commandLists", [])
        _check(found, len(lists) <= 3, "at most 3 commandLists")
        for commands in lists:
            _check(found, len(commands["commands"]) <= 10, "at most 10 commands per list")
            for command in commands["commands"]:
                _check(found, len(command["title"]) <= 32, f"command title {command['title']!r} is over 32")
                long_text = f"{command['title']}: description over 128 characters"
                _check(found, len(command["description"]) <= 128, long_text)
    for domain in manifest.get("validDomains", []):
        _check(found, bool(DOMAIN.match(domain)), f"validDomains: {domain!r} is not a bare domain")
    return found


def _check(found: list[str], ok: bool, problem: str) -> None:
    if not ok:
        found.append(problem)


def build(out: Path, *, app_id: str, domain: str) -> Path:
    manifest = render(app_id=app_id, domain=domain)
    found = problems(manifest)
    if found:
        raise ValueError("; ".join(found))
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        # Teams wants the three files at the root of the zip. Fixed timestamps: same input, same bytes.
        entries = {"manifest.json": json.dumps(manifest, indent=2).encode() + b"\n"}
        for key in ("color", "outline"):
            entries[manifest["icons"][key]] = (HERE / manifest["icons"][key]).read_bytes()
        for name, data in entries.items():
            package.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the threadwise Teams app package (a zip).")
    env = os.environ
    parser.add_argument("--app-id", default=env.get("MICROSOFT_APP_ID", ""), help="the Azure Bot's app id")
    parser.add_argument("--domain", default=env.get("BOT_DOMAIN", ""), help="host name the bot is served at")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.app_id or not args.domain:
        parser.error("give --app-id and --domain (or set MICROSOFT_APP_ID and BOT_DOMAIN)")
    try:
        out = build(args.out, app_id=args.app_id, domain=args.domain.removeprefix("https://").rstrip("/"))
    except ValueError as exc:
        print(f"package.py: the manifest is not valid: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: upload it in Teams (Apps > Manage your apps > Upload an app)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
