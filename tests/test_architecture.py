"""The dependency directions of DESIGN.md: rag/ knows nothing of chat; bot/core/ no platform SDK."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_SDKS = ("slack_bolt", "slack_sdk", "botbuilder", "botframework")


def _imports(folder: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_rag_never_imports_bot() -> None:
    offenders = {
        f: n for f, n in _imports("rag").items() if any(m == "bot" or m.startswith("bot.") for m in n)
    }
    assert not offenders


def test_core_imports_no_platform_sdk() -> None:
    offenders = {
        f: n for f, n in _imports("bot/core").items() if any(m.split(".")[0] in PLATFORM_SDKS for m in n)
    }
    assert not offenders


def test_botbuilder_stays_inside_bot_teams() -> None:
    offenders = {
        f: n
        for f, n in _imports("bot").items()
        if not f.startswith("bot/teams/")
        and any(m.split(".")[0] in ("botbuilder", "botframework") for m in n)
    }
    assert not offenders


def test_no_module_reads_the_environment_outside_the_composition_root() -> None:
    allowed = {"bot/cli.py", "rag/embed.py"}  # embed sets HF offline flags before loading the model
    offenders = []
    for folder in ("bot", "rag"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if rel not in allowed and "os.environ" in path.read_text():
                offenders.append(rel)
    assert not offenders
