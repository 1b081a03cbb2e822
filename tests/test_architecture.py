"""The dependency directions of DESIGN.md: rag/ knows nothing of chat; bot/core/ no platform SDK and
nothing else of bot/; a platform package nothing of another; only the composition root (and the
platform table) builds platforms; bot/ uses rag's public names only, and the vector store through its
port (rag/store.py): Chroma is known to rag/chroma/ alone and chosen by the composition root."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.platform import Platform
from bot.platforms import PLATFORMS

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_SDKS = ("slack_bolt", "slack_sdk", "botbuilder", "botframework")
PLATFORM_PACKAGES = ("bot.slack", "bot.teams", "bot.console")
COMPOSITION_ROOT = ("bot/compose/", "bot/platforms.py")


def _imports(folder: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from bot import slack`
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


def _platform_package(module: str) -> str | None:
    return next((p for p in PLATFORM_PACKAGES if module == p or module.startswith(p + ".")), None)


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def test_core_imports_nothing_else_of_bot() -> None:
    offenders = {
        f: {m for m in n if m.startswith("bot.") and not m.startswith("bot.core")}
        for f, n in _imports("bot/core").items()
    }
    assert not {f: n for f, n in offenders.items() if n}


def test_platform_packages_import_nothing_from_each_other() -> None:
    offenders = {}
    for path, names in _imports("bot").items():
        own = _platform_package(_module(path))
        others = {m for m in names if _platform_package(m) not in (None, own)}
        if own is not None and others:
            offenders[path] = others
    assert not offenders


def test_only_the_composition_root_and_the_platform_table_import_platform_packages() -> None:
    offenders = {}
    for path, names in _imports("bot").items():
        if _platform_package(_module(path)) is not None or path.startswith(COMPOSITION_ROOT):
            continue
        found = {m for m in names if _platform_package(m) is not None}
        if found:
            offenders[path] = found
    assert not offenders


def test_each_row_of_the_platform_table_is_a_platform_package() -> None:
    for row in PLATFORMS:
        assert _platform_package(row.module), row.module
        assert isinstance(row.platform(), Platform)


STORE_IMPLEMENTATION = "rag.chroma"


def _names_from(folder: str, package: str) -> dict[str, set[str]]:
    """Per file, every `module.name` it imports from `package` (`from rag.x import y` gives rag.x.y)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.split(".")[0] == package)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_bot_imports_only_public_names_of_rag() -> None:
    offenders = {
        f: private
        for f, names in _names_from("bot", "rag").items()
        if (private := {n for n in names if any(part.startswith("_") for part in n.split("."))})
    }
    assert not offenders


def test_only_the_composition_root_chooses_the_vector_store() -> None:
    offenders = {
        f: found
        for f, names in _names_from("bot", "rag").items()
        if not f.startswith(COMPOSITION_ROOT)
        and (found := {n for n in names if n.startswith(STORE_IMPLEMENTATION + ".")})
    }
    assert not offenders


def test_chroma_is_known_to_its_package_alone() -> None:
    """chromadb is imported, and collections are named, in rag/chroma/ only: the engine, search,
    export and backup work through the VectorStore port."""
    offenders = {}
    for folder in ("bot", "rag"):
        for path, names in _imports(folder).items():
            if path.startswith("rag/chroma/"):
                continue
            found = {m for m in names if m.split(".")[0] == "chromadb"}
            found |= {n for n in names if n.startswith(STORE_IMPLEMENTATION + ".collection_base")}
            if found:
                offenders[path] = found
    assert not offenders
    assert any("chromadb" in names for path, names in _imports("rag/chroma").items())
