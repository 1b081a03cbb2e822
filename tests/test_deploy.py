"""The deploy recipes agree with the code: the image, compose files, Kubernetes and cloud manifests.

Names, ports, commands and probe paths are checked against what the code really has: Settings' fields
and defaults, the `threadwise` parser's sub-commands, and the routes of a built aiohttp app.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib.metadata
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from bot.cli import build_parser
from bot.compose import build_engine, build_service
from bot.infra.metrics import Metrics, start_metrics_server
from bot.platforms import enabled_platforms
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {name.upper() for name in Settings.model_fields}
# Variables for the Python runtime and the model libraries, not threadwise settings: allowed in the
# image only, never in a recipe (a recipe setting a name Settings ignores is a silent mistake).
IMAGE_RUNTIME_ENV = {
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
}
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "clang", "cmake")


def default(name: str) -> object:
    return Settings.model_fields[name.lower()].default


def subcommands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


# -- the routes the code registers ----------------------------------------------------------------


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def serve_settings(data: Path, **overrides: object) -> Settings:
    """Slack over HTTP and Teams, on an embedded store in `data`, whatever this machine's environment."""
    values: dict[str, object] = {
        "chroma_persist_directory": str(data / "chroma"),
        "chroma_host": None,
        "slack_bot_token": "xoxb-test",
        "slack_signing_secret": "test-secret",
        "slack_app_token": None,
        "slack_api_url": "http://127.0.0.1:9/api/",  # never Slack's: nothing here may reach the network
        "microsoft_app_id": "00000000-0000-0000-0000-000000000000",
        "microsoft_app_password": "test-password",
        "runner": "inprocess",
        "redis_url": None,
    }
    return Settings(_env_file=None, **{**values, **overrides})  # type: ignore[call-arg]


def serve_app(settings: Settings) -> web.Application:
    """`threadwise serve`'s app as run_serve composes it, every configured platform mounted."""
    return build_service(settings, build_engine(settings)).app


@pytest.fixture(scope="module")
def serve_routes(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    """(method, path) that `threadwise serve` answers (mounting only adds routes: nothing starts)."""
    settings = serve_settings(tmp_path_factory.mktemp("routes"))
    assert {p.name for p in enabled_platforms(settings)} == {"slack", "teams"}
    return _routes(serve_app(settings))


@pytest.fixture(scope="module")
def serve_paths(serve_routes: set[tuple[str, str]]) -> set[str]:
    """GET paths of `threadwise serve`: what a probe may ask for on PORT."""
    return {path for method, path in serve_routes if method == "GET"}


@pytest.fixture
async def worker_metrics() -> AsyncIterator[tuple[set[str], int]]:
    """The GET paths a `threadwise worker` serves on WORKER_METRICS_PORT, and the port it got."""
    runner = await start_metrics_server(Metrics(registry=CollectorRegistry()), host="127.0.0.1", port=0)
    try:
        yield {path for method, path in _routes(runner.app) if method == "GET"}, runner.addresses[0][1]
    finally:
        await runner.cleanup()


def test_the_code_serves_the_routes_the_recipes_probe(serve_routes: set[tuple[str, str]]) -> None:
    # The recipes below rely on these; if the code drops one, this says so before they do.
    assert {("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics")} <= serve_routes
    assert {("POST", "/slack/events"), ("POST", "/api/messages")} <= serve_routes


# -- Dockerfile -------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for inst, args in self.instructions if inst == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments (also inside a RUN) dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        inst, _, args = line.partition(" ")
        inst = inst.upper()
        if inst == "FROM":
            words = args.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif inst not in {"ARG"} or stages:
            stages[-1].instructions.append((inst, args.strip()))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_names(env_args: str) -> set[str]:
    """Names set by one ENV instruction (`ENV A=1 B=2`, or the old `ENV A 1`)."""
    if "=" not in env_args.split()[0]:
        return {env_args.split()[0]}
    return {word.split("=", 1)[0] for word in shlex.split(env_args)}


def env_values(env_args: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(env_args) if "=" in word)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_dockerfile_builds_in_stages_on_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert stage.base == "python:3.11-slim", stage.base


def test_the_final_stage_runs_as_uid_1000(final: Stage) -> None:
    user = final.last("USER")
    assert user is not None, "the final stage sets no USER: the container would run as root"
    name = user.split(":")[0]
    if name != "1000":
        created = " ".join(final.all("RUN"))
        assert re.search(rf"useradd[^&;]*--uid 1000[^&;]*\b{re.escape(name)}\b", created), user
    # The data directory is writable by that user.
    assert any("chown" in run and "1000" in run and "/data" in run for run in final.all("RUN"))


def test_the_final_stage_has_no_compilers_caches_or_tests(final: Stage) -> None:
    runs = " ".join(final.all("RUN"))
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", runs), tool
    assert "pip install" not in runs, "install in the builder stage; copy the venv"
    for args in final.all("COPY"):
        sources = args.split()[:-1]
        assert not {"tests", "./tests", ".venv", ".", "./"} & set(sources), f"COPY {args}"


def test_torch_is_the_pinned_cpu_build(stages: list[Stage]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    runs = [run for stage in stages[:-1] for run in stage.all("RUN")]
    torch = [run for run in runs if "torch" in run and "pip install" in run]
    assert torch, "torch must be installed on its own, before the project"
    assert pin in torch[0] and "download.pytorch.org/whl/cpu" in torch[0]


def test_the_model_is_checked_offline_in_the_build(stages: list[Stage]) -> None:
    builder_env = {k: v for stage in stages[:-1] for e in stage.all("ENV") for k, v in env_values(e).items()}
    assert builder_env.get("HF_HUB_OFFLINE") == "1"
    assert any("SentenceEmbedder" in run and ".load()" in run for s in stages[:-1] for run in s.all("RUN"))


def test_image_environment_is_settings_or_the_python_runtime(final: Stage) -> None:
    names = set().union(*(env_names(e) for e in final.all("ENV")))
    assert names - SETTINGS - IMAGE_RUNTIME_ENV == set()
    values = {k: v for e in final.all("ENV") for k, v in env_values(e).items()}
    assert values["HF_HUB_OFFLINE"] == "1", "the model must never be fetched at start"
    # The data lives under the VOLUME, so a container's store and backups survive it.
    volumes = [v for args in final.all("VOLUME") for v in exec_form(args)]
    for name in ("CHROMA_PERSIST_DIRECTORY", "BACKUP_DIR", "FEEDBACK_PATH"):
        assert any(values[name].startswith(v.rstrip("/") + "/") for v in volumes), name


def test_entrypoint_and_cmd_are_threadwise_serve(final: Stage) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entrypoint = exec_form(final.last("ENTRYPOINT") or "[]")
    cmd = exec_form(final.last("CMD") or "[]")
    assert entrypoint == ["threadwise"] and "threadwise" in pyproject["project"]["scripts"]
    assert build_parser().parse_args(cmd).command == "serve"
    assert cmd[0] in subcommands()


def test_exposed_ports_are_the_settings_defaults(final: Stage) -> None:
    exposed = {int(p.split("/")[0]) for args in final.all("EXPOSE") for p in args.split()}
    assert exposed == {default("port"), default("worker_metrics_port")}


# -- the health check the image runs --------------------------------------------------------------


def _healthcheck_script(final: Stage) -> Path:
    """The file HEALTHCHECK runs, found in the repository through the COPY that puts it there."""
    check = final.last("HEALTHCHECK")
    assert check is not None, "no HEALTHCHECK"
    command = exec_form(check.split(" CMD ", 1)[1])
    assert command[0] == "python"
    target = command[1]
    for args in final.all("COPY"):
        source, dest = args.split()[-2:]
        if dest == target:
            return ROOT / source
    raise AssertionError(f"HEALTHCHECK runs {target}, which no COPY puts in the image")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run_check(script: Path, cwd: Path, **env: str) -> int:
    """The script's exit status, run as the image runs it (in a thread: the server under test needs
    this event loop to answer)."""
    clean = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(script)], cwd=cwd, env={**clean, **env}, timeout=30
    )
    return result.returncode


def test_healthcheck_script_defaults_are_the_settings_defaults(final: Stage) -> None:
    script = _healthcheck_script(final)
    text = script.read_text()
    assert f'DEFAULT_PORT = "{default("port")}"' in text
    assert f'DEFAULT_WORKER_METRICS_PORT = "{default("worker_metrics_port")}"' in text
    assert f'DEFAULT_HOST = "{default("host")}"' in text


async def test_healthcheck_passes_when_serve_answers_on_port(final: Stage, tmp_path: Path) -> None:
    script = _healthcheck_script(final)
    nobody = str(_free_port())
    server = TestServer(
        serve_app(serve_settings(tmp_path, slack_bot_token=None)), host="127.0.0.1", port=_free_port()
    )
    await server.start_server()
    try:
        port = str(server.port)
        assert await _run_check(script, tmp_path, PORT=port, WORKER_METRICS_PORT=nobody) == 0
        assert await _run_check(script, tmp_path, PORT=nobody, WORKER_METRICS_PORT=nobody) == 1
        (tmp_path / ".env").write_text(f"PORT={port}\nWORKER_METRICS_PORT=0\n")  # read as Settings does
        assert await _run_check(script, tmp_path) == 0
    finally:
        await server.close()


async def test_healthcheck_passes_when_a_worker_serves_its_metrics(
    final: Stage, tmp_path: Path, worker_metrics: tuple[set[str], int]
) -> None:
    _, port = worker_metrics
    script = _healthcheck_script(final)
    assert await _run_check(script, tmp_path, PORT=str(_free_port()), WORKER_METRICS_PORT=str(port)) == 0
    assert await _run_check(script, tmp_path, PORT=str(_free_port()), WORKER_METRICS_PORT="0") == 1


# -- .dockerignore ------------------------------------------------------------------------------------


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        globs = [glob, glob.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_the_build_small_and_sends_what_it_copies(stages: list[Stage]) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (".git", ".venv", "data/chroma", "tests/test_deploy.py", ".env", "bot/__pycache__/x.pyc"):
        assert ignored(path, patterns), path
    for stage in stages:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert not ignored(source, patterns), f"COPY {source}, but .dockerignore leaves it out"


# -- recipes: what every one must respect ---------------------------------------------------------------

SECRET_SETTINGS = {
    name for name in SETTINGS if any(word in name for word in ("TOKEN", "SECRET", "PASSWORD", "API_KEY"))
}
_DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resolve_defaults(value: str) -> str:
    """`${PORT:-3978}` → `3978`, checking that the variable is a setting with that very default."""

    def substitute(match: re.Match[str]) -> str:
        name, fallback = match.groups()
        assert name in SETTINGS, f"${{{name}}} is not a setting"
        assert fallback == str(default(name)), f"${{{name}:-{fallback}}}: Settings says {default(name)}"
        return fallback

    resolved = _DEFAULTED.sub(substitute, value)
    assert "${" not in resolved, f"{value}: give every interpolated variable its default"
    return resolved


@dataclass
class Process:
    """One threadwise process a recipe runs: where, its sub-command, settings, replica count, probes."""

    where: str
    command: str
    env: dict[str, str]
    replicas: int
    probes: dict[str, tuple[str, int]] = field(default_factory=dict)  # kind → (path, port)

    def setting(self, name: str) -> str:
        """The value this process gets: the recipe's, else the image's, else Settings' default."""
        if name in self.env:
            return self.env[name]
        if name in IMAGE_ENV:
            return IMAGE_ENV[name]
        value = default(name)
        return "" if value is None else str(value)


def _image_env() -> dict[str, str]:
    final = parse_dockerfile((ROOT / "Dockerfile").read_text())[-1]
    return {k: v for e in final.all("ENV") for k, v in env_values(e).items()}


IMAGE_ENV = _image_env()


def check_process(process: Process, serve_paths: set[str], worker_paths: set[str]) -> None:
    """The rules every recipe's threadwise process must follow."""
    assert process.command in subcommands(), process
    unknown = set(process.env) - SETTINGS
    assert not unknown, f"{process.where}: {sorted(unknown)} are not settings (Settings ignores them)"
    Settings(_env_file=None, **{k.lower(): v for k, v in process.env.items() if v})  # type: ignore[arg-type]
    if process.command == "serve" and process.replicas > 1:
        for name in ("REDIS_URL", "CHROMA_HOST"):
            assert process.setting(name), f"{process.where}: {process.replicas} serves need {name}"
        assert process.setting("RUNNER") == "queue", f"{process.where}: replicas need RUNNER=queue"
    if process.command == "worker":
        assert process.setting("REDIS_URL") and process.setting("CHROMA_HOST"), process.where
    for kind, (path, port) in process.probes.items():
        if process.command == "serve":
            assert path in serve_paths, f"{process.where}: {kind} probe on {path}, not a route of serve"
            assert port == int(process.setting("PORT")), f"{process.where}: {kind} probe on port {port}"
        else:
            assert path in worker_paths, (
                f"{process.where}: {kind} probe on {path}; a worker serves {worker_paths}"
            )
            assert port == int(process.setting("WORKER_METRICS_PORT")), f"{process.where}: {kind} port {port}"
    if process.command == "serve":
        # Liveness must not depend on Redis or Chroma (a restart would not bring them back): /health.
        expected = {"liveness": "/health", "startup": "/health", "readiness": "/ready"}
        for kind, (path, _) in process.probes.items():
            assert path == expected[kind], f"{process.where}: {kind} probe on {path}, not {expected[kind]}"


# -- docker compose ---------------------------------------------------------------------------------------


def compose(name: str) -> dict[str, Any]:
    (doc,) = load_yaml_documents(ROOT / name)
    return doc


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: resolve_defaults(str(v)) for k, v in env.items()}


def threadwise_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in doc["services"].items() if str(s.get("image", "")).startswith("threadwise")}


def compose_processes(doc: dict[str, Any], where: str) -> list[Process]:
    processes = []
    for name, service in threadwise_services(doc).items():
        if "backup" in service.get("profiles", []):
            continue  # a one-off job, checked on its own
        processes.append(
            Process(
                where=f"{where}:{name}",
                command=service["command"][0],
                env=_compose_env(service),
                replicas=int(service.get("deploy", {}).get("replicas", 1)),
            )
        )
    return processes


def test_compose_threadwise_services_run_the_image_its_way(final: Stage) -> None:
    healthcheck = exec_form((final.last("HEALTHCHECK") or "").split(" CMD ", 1)[1])
    for name in ("docker-compose.yml", "docker-compose.scale.yml"):
        doc = compose(name)
        services = threadwise_services(doc)
        assert services, name
        for service_name, service in services.items():
            assert service["build"] == ".", service_name
            assert {"path": ".env", "required": False} in service["env_file"], service_name
            build_parser().parse_args(service["command"])  # a real sub-command with valid arguments
            if "backup" not in service.get("profiles", []):
                assert service["healthcheck"]["test"] == ["CMD", *healthcheck], service_name


async def test_compose_processes_follow_the_rules(
    serve_paths: set[str], worker_metrics: tuple[set[str], int]
) -> None:
    for name in ("docker-compose.yml", "docker-compose.scale.yml"):
        for process in compose_processes(compose(name), name):
            check_process(process, serve_paths, worker_metrics[0])


def test_compose_single_machine_keeps_its_data_in_a_named_volume() -> None:
    doc = compose("docker-compose.yml")
    (process,) = compose_processes(doc, "docker-compose.yml")
    assert process.command == "serve" and process.replicas == 1
    assert process.setting("RUNNER") == "inprocess" and not process.setting("CHROMA_HOST")
    (service,) = threadwise_services(doc).values()
    mounts = dict(volume.split(":", 1) for volume in service["volumes"])
    for name in ("CHROMA_PERSIST_DIRECTORY", "BACKUP_DIR", "FEEDBACK_PATH"):
        inside = [v for v, target in mounts.items() if process.setting(name).startswith(target + "/")]
        assert inside and inside[0] in doc["volumes"], f"{name} is not in a named volume"
    published = [resolve_defaults(p).split(":") for p in service["ports"]]
    assert [int(container) for _, container in published] == [int(process.setting("PORT"))]


def _healthchecked(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck", {})
    return bool(check.get("test")) and not check.get("disable")


def test_compose_scale_out_has_two_bots_two_workers_redis_and_chroma() -> None:
    doc = compose("docker-compose.scale.yml")
    processes = compose_processes(doc, "scale")
    assert sum(p.replicas for p in processes if p.command == "serve") == 2
    assert sum(p.replicas for p in processes if p.command == "worker") == 2
    services = doc["services"]
    redis = next(s for s in services.values() if str(s.get("image", "")).startswith("redis:"))
    chroma = next(s for s in services.values() if str(s.get("image", "")).startswith("chromadb/chroma:"))
    for service in services.values():
        if "backup" not in service.get("profiles", []):
            assert _healthchecked(service), service
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in doc["volumes"], f"{volume}: use a named volume"
    for name, service in threadwise_services(doc).items():
        needs = service.get("depends_on", {})
        for dependency in ("redis", "chroma"):
            assert needs[dependency]["condition"] == "service_healthy", name
    assert services["redis"] is redis and services["chroma"] is chroma
    _check_chroma_server(chroma["image"], chroma["command"], [p for p in processes])
    for process in processes:
        assert process.setting("REDIS_URL").startswith("redis://redis:"), process.where


def _check_chroma_server(image: str, command: list[str], clients: list[Process]) -> None:
    """The Chroma server: our chromadb's major version, `run --path`, on the port clients use."""
    major = importlib.metadata.version("chromadb").split(".")[0]
    assert image.split(":")[1].split(".")[0] == major, f"{image}: threadwise pins chromadb {major}.x"
    assert command[0] == "run" and "--path" in command
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    for client in clients:
        assert client.setting("CHROMA_PORT") == port, client.where


def test_compose_load_balancer_sends_to_the_bots_port() -> None:
    doc = compose("docker-compose.scale.yml")
    config = resolve_defaults(doc["configs"]["lb"]["content"])
    (upstream,) = re.findall(r"server\s+(\w+):(\d+)", config)
    bot = doc["services"][upstream[0]]
    assert bot["command"] == ["serve"]
    assert int(upstream[1]) == int(Process("lb", "serve", _compose_env(bot), 2).setting("PORT"))
    listen = re.search(r"listen\s+(\d+);", config)
    assert listen is not None
    published = [resolve_defaults(p).split(":") for p in doc["services"]["lb"]["ports"]]
    assert [container for _, container in published] == [listen.group(1)]


def test_compose_backup_job_writes_into_a_volume() -> None:
    doc = compose("docker-compose.scale.yml")
    backup = doc["services"]["backup"]
    assert backup["command"] == ["backup"] and backup["profiles"] == ["backup"]
    env = _compose_env(backup)
    assert env["CHROMA_HOST"] and set(env) <= SETTINGS
    mounts = dict(volume.split(":", 1) for volume in backup["volumes"])
    assert any(env["BACKUP_DIR"] == target for target in mounts.values())


# -- secrets: referenced, never written into a recipe --------------------------------------------------


def literal_secrets(node: object, where: str = "") -> list[str]:
    """Places in a parsed manifest where a credential setting is given a value in the file itself."""
    found: list[str] = []
    if isinstance(node, dict):
        name = node.get("name", node.get("key"))
        if name in SECRET_SETTINGS and node.get("value") not in (None, ""):
            found.append(f"{where}: {name}")
        for key, value in node.items():
            if key in SECRET_SETTINGS and isinstance(value, str | int) and str(value):
                found.append(f"{where}: {key}")
            found.extend(literal_secrets(value, where))
    elif isinstance(node, list):
        for item in node:
            found.extend(literal_secrets(item, where))
    return found


def test_literal_secrets_are_found() -> None:
    # The scan below must be able to fail: each of these puts a credential into a manifest.
    assert literal_secrets({"env": [{"name": "SLACK_BOT_TOKEN", "value": "xoxb-1"}]})
    assert literal_secrets({"data": {"GROQ_API_KEY": "gsk_1"}})
    assert literal_secrets({"envs": [{"key": "MICROSOFT_APP_PASSWORD", "type": "SECRET", "value": "p"}]})
    assert not literal_secrets({"env": [{"name": "SLACK_BOT_TOKEN", "valueFrom": {"secretKeyRef": {}}}]})


def recipe_files() -> list[Path]:
    deploy = ROOT / "deploy"
    found = [ROOT / "docker-compose.yml", ROOT / "docker-compose.scale.yml"]
    for folder in ("k8s", "ecs", "cloudrun", "digitalocean"):
        found += sorted(p for p in (deploy / folder).glob("*") if p.suffix in {".yaml", ".yml", ".json"})
    return found


def load_recipe(path: Path) -> list[Any]:
    if path.suffix == ".json":
        return [json.loads(path.read_text())]
    return load_yaml_documents(path)


def test_no_recipe_holds_a_credential() -> None:
    for path in recipe_files():
        for doc in load_recipe(path):
            assert not literal_secrets(doc, path.name)
            assert doc.get("kind") != "Secret", f"{path.name}: create the Secret, do not commit one"


# -- Kubernetes ------------------------------------------------------------------------------------------

K8S = ROOT / "deploy" / "k8s"


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files, "kustomization.yaml must list every manifest"
    return [doc for name in sorted(files) for doc in load_yaml_documents(K8S / name)]


def objects(k8s: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in k8s if o["kind"] == kind]


def named(k8s: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects(k8s, kind) if o["metadata"]["name"] == name]
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


def workloads(k8s: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in k8s if o["kind"] in {"Deployment", "StatefulSet", "CronJob"}]


def is_threadwise(container: dict[str, Any]) -> bool:
    return str(container["image"]).split(":")[0].rsplit("/", 1)[-1] == "threadwise"


def container_env(k8s: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(k8s, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            env[item["name"]] = f"<{item['name']} from the cluster>"
    return env


def env_names_of(container: dict[str, Any], k8s: list[dict[str, Any]]) -> set[str]:
    return set(container_env(k8s, container)) | {item["name"] for item in container.get("env", [])}


def probe_target(container: dict[str, Any], probe: dict[str, Any]) -> tuple[str, int]:
    get = probe["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return get["path"], int(port)


def k8s_processes(k8s: list[dict[str, Any]]) -> list[Process]:
    hpa_max = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"]
        for h in objects(k8s, "HorizontalPodAutoscaler")
    }
    processes = []
    for workload in workloads(k8s):
        for container in pod_spec(workload)["containers"]:
            if not is_threadwise(container):
                continue
            name = workload["metadata"]["name"]
            replicas = max(workload["spec"].get("replicas", 1), hpa_max.get(name, 1))
            probes = {
                kind.removesuffix("Probe"): probe_target(container, container[kind])
                for kind in ("livenessProbe", "readinessProbe", "startupProbe")
                if kind in container
            }
            processes.append(
                Process(f"k8s {name}", container["args"][0], container_env(k8s, container), replicas, probes)
            )
    return processes


async def test_k8s_processes_follow_the_rules(
    k8s: list[dict[str, Any]], serve_paths: set[str], worker_metrics: tuple[set[str], int]
) -> None:
    processes = k8s_processes(k8s)
    assert {p.command for p in processes} == {"serve", "worker", "backup"}
    for process in processes:
        check_process(process, serve_paths, worker_metrics[0])
        if process.command in {"serve", "worker"}:
            assert {"liveness", "readiness", "startup"} <= set(process.probes), process.where


def test_k8s_containers_have_requests_and_limits(k8s: list[dict[str, Any]]) -> None:
    for workload in workloads(k8s):
        for container in pod_spec(workload)["containers"]:
            resources = container.get("resources", {})
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where
            if is_threadwise(container):
                assert {"cpu", "memory"} <= set(resources["limits"]), where


def test_k8s_threadwise_pods_run_as_uid_1000(k8s: list[dict[str, Any]]) -> None:
    for workload in workloads(k8s):
        spec = pod_spec(workload)
        if any(is_threadwise(c) for c in spec["containers"]):
            assert spec["securityContext"]["runAsUser"] == 1000, workload["metadata"]["name"]
            assert spec["securityContext"]["runAsNonRoot"] is True


def test_k8s_credentials_come_from_the_documented_secret(k8s: list[dict[str, Any]]) -> None:
    referenced = set()
    for workload in workloads(k8s):
        for container in pod_spec(workload)["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    referenced.add(source["secretRef"]["name"])
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                    assert ref["key"] in SETTINGS, ref
    assert len(referenced) == 1, referenced
    (secret,) = referenced
    how = (K8S / "kustomization.yaml").read_text()
    assert f"create secret generic {secret}" in how
    for name in re.findall(r"--from-literal=([A-Z_]+)=", how):
        assert name in SECRET_SETTINGS, name
    for config in objects(k8s, "ConfigMap"):
        assert not set(config["data"]) & SECRET_SETTINGS


def test_k8s_pdbs_and_hpas_target_real_deployments(k8s: list[dict[str, Any]]) -> None:
    deployments = {d["metadata"]["name"]: d for d in objects(k8s, "Deployment")}
    hpas = objects(k8s, "HorizontalPodAutoscaler")
    pdbs = objects(k8s, "PodDisruptionBudget")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} == set(deployments)
    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert hpa["spec"]["minReplicas"] <= deployments[target["name"]]["spec"]["replicas"]
    covered = set()
    for pdb in pdbs:
        selector = pdb["spec"]["selector"]["matchLabels"]
        matching = [n for n, d in deployments.items() if selector.items() <= pod_labels(d).items()]
        assert len(matching) == 1, (pdb["metadata"]["name"], matching)
        covered.update(matching)
    assert covered == set(deployments)
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels(deployment).items(), name


def _service_backends(k8s: list[dict[str, Any]], service: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers a Service's selector reaches."""
    selector = service["spec"]["selector"]
    return [
        container
        for workload in workloads(k8s)
        if selector.items() <= pod_labels(workload).items()
        for container in pod_spec(workload)["containers"]
    ]


def _service_target(k8s: list[dict[str, Any]], name: str, port: int | str) -> tuple[dict[str, Any], int]:
    """(container, containerPort) behind Service `name` on `port` (its number or name)."""
    service = named(k8s, "Service", name)
    (entry,) = [p for p in service["spec"]["ports"] if port in (p["port"], p.get("name"))]
    (container,) = _service_backends(k8s, service)
    target = entry.get("targetPort", entry["port"])
    if isinstance(target, str):
        (target,) = [p["containerPort"] for p in container["ports"] if p["name"] == target]
    assert target in [p["containerPort"] for p in container["ports"]], (name, target)
    return container, int(target)


def test_k8s_services_reach_the_ports_the_processes_listen_on(k8s: list[dict[str, Any]]) -> None:
    for service in objects(k8s, "Service"):
        for entry in service["spec"]["ports"]:
            _service_target(k8s, service["metadata"]["name"], entry["port"])
    serve = next(p for p in k8s_processes(k8s) if p.command == "serve")
    container, port = _service_target(k8s, "threadwise", "http")
    assert container["args"] == ["serve"] and port == int(serve.setting("PORT"))


def test_k8s_stores_are_the_services_the_processes_use(k8s: list[dict[str, Any]]) -> None:
    processes = k8s_processes(k8s)
    chroma = named(k8s, "StatefulSet", "chroma")
    (container,) = pod_spec(chroma)["containers"]
    for process in processes:
        host, port = process.setting("CHROMA_HOST"), int(process.setting("CHROMA_PORT"))
        backend, target = _service_target(k8s, host, port)
        assert backend is container, f"{process.where}: CHROMA_HOST {host} is not the Chroma server"
        # The Service may map ports: the server must listen where the Service sends.
        _check_chroma_server(container["image"], container["args"], [])
        assert target == int(container["args"][container["args"].index("--port") + 1])
        redis = re.fullmatch(r"redis://([\w.-]+):(\d+)/\d+", process.setting("REDIS_URL"))
        assert redis is not None, process.setting("REDIS_URL")
        backend, _ = _service_target(k8s, redis.group(1), int(redis.group(2)))
        assert backend["image"].startswith("redis:")
    # Chroma's data is on a claim of its own, mounted where `--path` points.
    templates = {t["metadata"]["name"] for t in chroma["spec"]["volumeClaimTemplates"]}
    path = container["args"][container["args"].index("--path") + 1]
    assert any(m["mountPath"] == path and m["name"] in templates for m in container["volumeMounts"])


def test_k8s_workers_get_time_to_finish_their_jobs(k8s: list[dict[str, Any]]) -> None:
    worker = named(k8s, "Deployment", "threadwise-worker")
    (process,) = [p for p in k8s_processes(k8s) if p.where == "k8s threadwise-worker"]
    grace = int(process.setting("WORKER_SHUTDOWN_GRACE_SECONDS"))
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > grace


def test_k8s_backup_job_writes_to_a_claim(k8s: list[dict[str, Any]]) -> None:
    from bot.cron import cron_trigger

    (job,) = objects(k8s, "CronJob")
    cron_trigger(job["spec"]["schedule"], timezone="UTC")
    spec = pod_spec(job)
    (container,) = spec["containers"]
    (process,) = [p for p in k8s_processes(k8s) if p.command == "backup"]
    assert process.setting("CHROMA_HOST"), "the backup exports the Chroma server's data"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[process.setting("BACKUP_DIR")])
    claim = volume["persistentVolumeClaim"]["claimName"]
    named(k8s, "PersistentVolumeClaim", claim)


def test_k8s_ingress_exposes_only_the_platform_webhooks(
    k8s: list[dict[str, Any]], serve_routes: set[tuple[str, str]]
) -> None:
    posts = {path for method, path in serve_routes if method == "POST"}
    (ingress,) = objects(k8s, "Ingress")
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            assert entry["path"] in posts, entry["path"]
            backend = entry["backend"]["service"]
            container, _ = _service_target(
                k8s, backend["name"], backend["port"].get("name") or backend["port"]["number"]
            )
            assert container["args"] == ["serve"]


def test_k8s_prometheus_annotations_point_at_metrics(
    k8s: list[dict[str, Any]], serve_paths: set[str]
) -> None:
    ports = {"serve": "PORT", "worker": "WORKER_METRICS_PORT"}
    for workload in objects(k8s, "Deployment"):
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        (container,) = pod_spec(workload)["containers"]
        process = next(p for p in k8s_processes(k8s) if p.where == f"k8s {workload['metadata']['name']}")
        assert annotations["prometheus.io/port"] == process.setting(ports[container["args"][0]])
        assert annotations["prometheus.io/path"] == "/metrics" and "/metrics" in serve_paths


# -- AWS ECS ----------------------------------------------------------------------------------------------

ECS = ROOT / "deploy" / "ecs"


def ecs_processes() -> list[Process]:
    processes = []
    for path in sorted(ECS.glob("*.json")):
        task = json.loads(path.read_text())
        for container in task["containerDefinitions"]:
            env = {e["name"]: e["value"] for e in container.get("environment", [])}
            secrets = {s["name"]: f"<{s['name']} from Secrets Manager>" for s in container.get("secrets", [])}
            assert not set(env) & SECRET_SETTINGS, f"{path.name}: credentials belong in `secrets`"
            assert set(secrets) <= SETTINGS, path.name
            # An ECS service runs several tasks of a definition, so each must be able to share.
            processes.append(Process(f"ecs {path.name}", container["command"][0], {**env, **secrets}, 2))
    return processes


def test_ecs_task_definitions_run_the_image_its_way(final: Stage) -> None:
    healthcheck = exec_form((final.last("HEALTHCHECK") or "").split(" CMD ", 1)[1])
    tasks = {p.stem: json.loads(p.read_text()) for p in ECS.glob("*.json")}
    assert set(tasks) == {"serve", "worker"}
    for name, task in tasks.items():
        (container,) = task["containerDefinitions"]
        assert container["command"] == [name] and container["user"].split(":")[0] == "1000"
        assert container["healthCheck"]["command"] == ["CMD", *healthcheck], name
        process = next(p for p in ecs_processes() if p.where == f"ecs {name}.json")
        port = process.setting("PORT" if name == "serve" else "WORKER_METRICS_PORT")
        assert [m["containerPort"] for m in container["portMappings"]] == [int(port)], name
        if name == "worker":
            assert container["stopTimeout"] > int(process.setting("WORKER_SHUTDOWN_GRACE_SECONDS"))
            assert int(task["memory"]) >= 2048, "a worker holds the model"


async def test_ecs_processes_follow_the_rules(
    serve_paths: set[str], worker_metrics: tuple[set[str], int]
) -> None:
    for process in ecs_processes():
        check_process(process, serve_paths, worker_metrics[0])


# -- Google Cloud Run -------------------------------------------------------------------------------------

CLOUD_RUN = ROOT / "deploy" / "cloudrun"


def cloud_run_processes() -> list[Process]:
    processes = []
    for path in sorted(CLOUD_RUN.glob("*.yaml")):
        (service,) = load_yaml_documents(path)
        template = service["spec"]["template"]
        scale = int(template["metadata"]["annotations"]["autoscaling.knative.dev/maxScale"])
        (container,) = template["spec"]["containers"]
        env = {}
        for item in container["env"]:
            if "valueFrom" in item:
                assert "secretKeyRef" in item["valueFrom"], item
                env[item["name"]] = f"<{item['name']} from Secret Manager>"
            else:
                env[item["name"]] = str(item["value"])
        probes = {}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in container:
                probes[kind.removesuffix("Probe")] = probe_target(container, container[kind])
        (port,) = container["ports"]
        # Cloud Run sets PORT (reserved: a service may not) to the container port, where it sends
        # traffic and probes; serve listens on PORT, so that is where it listens.
        assert "PORT" not in env, f"{path.name}: Cloud Run sets PORT itself"
        env["PORT"] = str(port["containerPort"])
        processes.append(Process(f"cloudrun {path.name}", container["args"][0], env, scale, probes))
    return processes


async def test_cloud_run_services_follow_the_rules(
    serve_paths: set[str], worker_metrics: tuple[set[str], int]
) -> None:
    processes = cloud_run_processes()
    assert {p.command for p in processes} == {"serve", "worker"}
    for process in processes:
        check_process(process, serve_paths, worker_metrics[0])
        assert "startup" in process.probes and "liveness" in process.probes, process.where
        # No persistent disk: an embedded store would be lost with its instance.
        assert process.setting("CHROMA_HOST") and process.setting("REDIS_URL"), process.where


def test_cloud_run_keeps_cpu_for_work_after_the_response() -> None:
    for path in CLOUD_RUN.glob("*.yaml"):
        (service,) = load_yaml_documents(path)
        annotations = service["spec"]["template"]["metadata"]["annotations"]
        assert annotations["run.googleapis.com/cpu-throttling"] == "false", path.name
        (container,) = service["spec"]["template"]["spec"]["containers"]
        (port,) = container["ports"]
        if container["args"] == ["worker"]:
            assert port["containerPort"] == int(
                next(e["value"] for e in container["env"] if e["name"] == "WORKER_METRICS_PORT")
            )


# -- DigitalOcean App Platform --------------------------------------------------------------------------

DO_SPEC = ROOT / "deploy" / "digitalocean" / "app.yaml"


def do_processes(spec: dict[str, Any]) -> list[Process]:
    shared = spec.get("envs", [])
    processes = []
    for kind in ("services", "workers"):
        for component in spec.get(kind, []):
            env = {}
            for item in [*shared, *component.get("envs", [])]:
                if item.get("type") == "SECRET":
                    assert "value" not in item, f"{item['key']}: set secrets in App Platform, not here"
                    env[item["key"]] = f"<{item['key']} from App Platform>"
                else:
                    env[item["key"]] = str(item["value"])
            command = component.get("run_command", "serve").split()
            probes = {}
            if "health_check" in component:
                probes["readiness"] = (
                    component["health_check"]["http_path"],
                    component["health_check"]["port"],
                )
            if "liveness_health_check" in component:
                check = component["liveness_health_check"]
                probes["liveness"] = (check["http_path"], check["port"])
            processes.append(
                Process(f"do {component['name']}", command[0], env, component["instance_count"], probes)
            )
    return processes


async def test_digitalocean_components_follow_the_rules(
    serve_paths: set[str], worker_metrics: tuple[set[str], int], final: Stage
) -> None:
    (spec,) = load_yaml_documents(DO_SPEC)
    processes = do_processes(spec)
    assert {p.command for p in processes} == {"serve", "worker"}
    assert exec_form(final.last("CMD") or "[]") == ["serve"], "the bot relies on the image's default command"
    for process in processes:
        check_process(process, serve_paths, worker_metrics[0])
    (bot,) = spec["services"]
    assert bot["http_port"] == int(next(p for p in processes if p.command == "serve").setting("PORT"))
    databases = {d["name"] for d in spec["databases"]}
    for process in processes:
        bound = re.fullmatch(r"\$\{([\w-]+)\.DATABASE_URL\}", process.setting("REDIS_URL"))
        assert bound and bound.group(1) in databases, process.where
    posts = {rule["match"]["path"]["prefix"] for rule in spec["ingress"]["rules"]}
    assert posts == {"/slack/events", "/api/messages"}


# -- the README's Deploy and Troubleshooting sections ----------------------------------------------------


def test_readme_deploy_section_names_every_recipe() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy") : readme.index("## Operations")]
    for path in [ROOT / "Dockerfile", *recipe_files()]:
        assert path.name in deploy, f"the README's Deploy section does not mention {path.name}"


def _startup_errors() -> list[str]:
    """What `threadwise` prints (after `threadwise: `) for the README's troubleshooting examples."""
    from bot.commands.serve import require_credentials
    from bot.settings import load_settings
    from rag.errors import ConfigError

    bad: list[dict[str, object]] = [
        {"port": "abc"},
        {"runner": "queue"},
        {"environment": "production", "slack_bot_token": "xoxb-1"},
        {"microsoft_app_id": "00000000-0000-0000-0000-000000000000"},
        {"backup_schedule": "0 25 * * *"},
    ]
    messages = []
    for overrides in bad:
        with pytest.raises(ConfigError) as caught:
            load_settings(_env_file=None, **overrides)
        messages.append(str(caught.value))
    production = load_settings(_env_file=None, environment="production")
    with pytest.raises(ConfigError) as caught:
        require_credentials(production)
    messages.append(str(caught.value))
    return messages


def test_readme_troubleshooting_quotes_what_the_code_says(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    readme = (ROOT / "README.md").read_text()
    trouble = readme[readme.index("## Troubleshooting") : readme.index("## Development")]
    quotes = re.findall(r"`([^`]+)`", trouble)

    def quoted(message: str) -> bool:
        for quote in quotes:
            head = quote.removesuffix(" …")
            if quote == message or (quote != head and len(head) >= 40 and message.startswith(head)):
                return True
        return False

    for message in _startup_errors():
        assert quoted(message), f"the README's Troubleshooting does not quote: {message}"


def test_readiness_probes_wait_longer_than_the_checks(k8s: list[dict[str, Any]]) -> None:
    # A probe that gives up before HEALTH_CHECK_TIMEOUT sees a timeout, not the 503 naming what failed.
    for workload in objects(k8s, "Deployment"):
        (container,) = pod_spec(workload)["containers"]
        process = next(p for p in k8s_processes(k8s) if p.where == f"k8s {workload['metadata']['name']}")
        if process.command == "serve":
            timeout = container["readinessProbe"]["timeoutSeconds"]
            assert timeout > float(process.setting("HEALTH_CHECK_TIMEOUT")), workload["metadata"]["name"]
