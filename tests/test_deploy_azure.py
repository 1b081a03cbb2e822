"""The Azure recipes (deploy/azure) and the single-VM TLS proxy agree with the code, as
tests/test_deploy.py checks the other clouds: names are settings with valid values, probes ask for
served routes on the ports the processes listen on, credentials are Key Vault references, and the
proxy routes only the platforms' webhooks and /health."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from bot.cron import cron_trigger
from tests.test_deploy import (  # noqa: F401 — fixtures used below
    IMAGE_ENV,
    SECRET_SETTINGS,
    SETTINGS,
    Process,
    _check_chroma_server,
    check_process,
    literal_secrets,
    load_yaml_documents,
    serve_paths,
    serve_routes,
    worker_metrics,
)

ROOT = Path(__file__).resolve().parents[1]
AZURE = ROOT / "deploy" / "azure"
CONTAINER_APPS = ("serve.yaml", "worker.yaml", "chroma.yaml", "backup.yaml")
# App Service's own settings, read by the platform and not by threadwise (the only non-settings allowed).
APP_SERVICE_PLATFORM = {"WEBSITES_PORT", "WEBSITES_ENABLE_APP_SERVICE_STORAGE"}
KEY_VAULT_URL = re.compile(r"^https://KEYVAULT\.vault\.azure\.net/secrets/[a-z0-9-]+$")
KEY_VAULT_REFERENCE = re.compile(r"@Microsoft\.KeyVault\((VaultName=|SecretUri=)")
CREDENTIAL_SHAPES = re.compile(r"xox[abp]-\w|xapp-\w|gsk_\w|AccountKey=|rediss?://[^@\s]*:[^@\s]+@")


def app(name: str) -> dict[str, Any]:
    (doc,) = load_yaml_documents(AZURE / name)
    return doc


def container_app_process(name: str) -> tuple[Process, dict[str, Any]]:
    doc = app(name)
    props = doc["properties"]
    secrets = {s["name"]: s for s in props["configuration"].get("secrets", [])}
    (container,) = props["template"]["containers"]
    env = {}
    for item in container["env"]:
        if "secretRef" in item:
            secret = secrets[item["secretRef"]]
            assert KEY_VAULT_URL.match(secret["keyVaultUrl"]) and secret["identity"], secret
            env[item["name"]] = f"<{item['name']} from Key Vault>"
        else:
            assert isinstance(item["value"], str), f"{name}: {item['name']} must be a string"
            env[item["name"]] = item["value"]
    probes = {
        probe["type"].lower(): (probe["httpGet"]["path"], int(probe["httpGet"]["port"]))
        for probe in container.get("probes", [])
    }
    scale = props["template"].get("scale", {})
    process = Process(f"azure {name}", container["args"][0], env, int(scale.get("maxReplicas", 1)), probes)
    return process, doc


async def test_container_apps_follow_the_rules(
    serve_paths: set[str],  # noqa: F811 — the fixtures of tests/test_deploy.py
    worker_metrics: tuple[set[str], int],  # noqa: F811
) -> None:
    processes = [container_app_process(n)[0] for n in ("serve.yaml", "worker.yaml", "backup.yaml")]
    assert [p.command for p in processes] == ["serve", "worker", "backup"]
    for process in processes:
        check_process(process, serve_paths, worker_metrics[0])
        assert process.setting("CHROMA_HOST") and process.setting("REDIS_URL"), process.where
        for name in SECRET_SETTINGS | {"REDIS_URL"}:  # REDIS_URL holds the cache's access key
            assert process.env.get(name, "<from Key Vault>").endswith("from Key Vault>"), (
                process.where,
                name,
            )
    serve, worker, _ = processes
    assert {"startup", "liveness", "readiness"} <= set(serve.probes) and set(worker.probes) == set(
        serve.probes
    )


def test_serve_has_https_ingress_on_its_port_and_the_worker_none() -> None:
    serve, doc = container_app_process("serve.yaml")
    ingress = doc["properties"]["configuration"]["ingress"]
    assert ingress["external"] is True and ingress["allowInsecure"] is False
    assert ingress["targetPort"] == int(serve.setting("PORT"))
    worker, doc = container_app_process("worker.yaml")
    assert "ingress" not in doc["properties"]["configuration"]
    grace = doc["properties"]["template"]["terminationGracePeriodSeconds"]
    assert grace > int(worker.setting("WORKER_SHUTDOWN_GRACE_SECONDS"))
    assert grace <= 600, "Container Apps allows at most 600 s"


def test_the_chroma_app_is_the_server_the_processes_use() -> None:
    doc = app("chroma.yaml")
    props = doc["properties"]
    (container,) = props["template"]["containers"]
    clients = [container_app_process(n)[0] for n in ("serve.yaml", "worker.yaml", "backup.yaml")]
    ingress = props["configuration"]["ingress"]
    assert ingress["external"] is False and ingress["transport"] == "http"
    # Apps of the environment reach an internal HTTP ingress on port 80, which forwards to targetPort.
    _check_chroma_server(container["image"], container["args"], [])
    assert ingress["targetPort"] == int(container["args"][container["args"].index("--port") + 1])
    for client in clients:
        assert client.setting("CHROMA_HOST") == doc["name"] and client.setting("CHROMA_PORT") == "80"
    scale = props["template"]["scale"]
    assert scale["minReplicas"] == scale["maxReplicas"] == 1, "one process writes Chroma's files"
    (mount,) = container["volumeMounts"]
    (volume,) = props["template"]["volumes"]
    assert mount["volumeName"] == volume["name"] and volume["storageType"] == "AzureFile"
    assert mount["mountPath"] == container["args"][container["args"].index("--path") + 1]
    assert "nobrl" in volume["mountOptions"].split(","), "SQLite on Azure Files needs nobrl"


def test_the_backup_job_writes_to_an_azure_files_share() -> None:
    process, doc = container_app_process("backup.yaml")
    config = doc["properties"]["configuration"]
    assert config["triggerType"] == "Schedule"
    cron_trigger(config["scheduleTriggerConfig"]["cronExpression"], timezone="UTC")
    assert config["scheduleTriggerConfig"]["parallelism"] == 1
    (container,) = doc["properties"]["template"]["containers"]
    mounts = {m["mountPath"]: m["volumeName"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in doc["properties"]["template"]["volumes"]}
    assert volumes[mounts[process.setting("BACKUP_DIR")]]["storageType"] == "AzureFile"


# -- App Service, one instance --------------------------------------------------------------------------


def app_service() -> tuple[dict[str, Any], dict[str, Any]]:
    template = json.loads((AZURE / "appservice.json").read_text())
    (plan,) = [r for r in template["resources"] if r["type"] == "Microsoft.Web/serverfarms"]
    (site,) = [r for r in template["resources"] if r["type"] == "Microsoft.Web/sites"]
    return plan, site


def app_service_process() -> tuple[Process, dict[str, str], dict[str, Any]]:
    plan, site = app_service()
    config = site["properties"]["siteConfig"]
    settings = {s["name"]: s["value"] for s in config["appSettings"]}
    platform = {k: v for k, v in settings.items() if k in APP_SERVICE_PLATFORM}
    env = {k: v for k, v in settings.items() if k not in APP_SERVICE_PLATFORM}
    for name, value in env.items():
        if KEY_VAULT_REFERENCE.search(value):
            env[name] = f"<{name} from Key Vault>"
    probes = {"liveness": (config["healthCheckPath"], int(platform["WEBSITES_PORT"]))}
    replicas = max(int(plan["sku"]["capacity"]), int(config["numberOfWorkers"]))
    return Process("azure appservice.json", "serve", env, replicas, probes), platform, config


async def test_app_service_follows_the_rules(
    serve_paths: set[str],  # noqa: F811
    worker_metrics: tuple[set[str], int],  # noqa: F811
) -> None:
    process, platform, config = app_service_process()
    check_process(process, serve_paths, worker_metrics[0])
    assert "'DOCKER|{0}.azurecr.io/threadwise:{1}'" in config["linuxFxVersion"]
    assert int(platform["WEBSITES_PORT"]) == int(process.setting("PORT")), "App Service sends traffic there"
    for name in SECRET_SETTINGS & set(process.env):
        assert process.env[name].endswith("from Key Vault>"), name


def test_app_service_runs_one_instance_with_the_store_on_persistent_storage() -> None:
    process, platform, config = app_service_process()
    assert process.replicas == 1 and config["alwaysOn"] is True, "the scheduler backs up in this process"
    assert not process.setting("CHROMA_HOST") and process.setting("RUNNER") == "inprocess"
    mounts = [m["mountPath"] for m in config.get("azureStorageAccounts", {}).values()]
    persistent = ["/home"] if platform["WEBSITES_ENABLE_APP_SERVICE_STORAGE"] == "true" else mounts
    for name in ("CHROMA_PERSIST_DIRECTORY", "BACKUP_DIR", "FEEDBACK_PATH"):
        path = process.setting(name) or IMAGE_ENV[name]
        assert any(path.startswith(m.rstrip("/") + "/") for m in persistent), (
            f"{name}={path} is lost on restart"
        )


# -- no literal credential ----------------------------------------------------------------------------


def _references_only(node: object) -> object:
    """The manifest with Key Vault references (resolved by Azure at run time) taken out."""
    if isinstance(node, dict):
        return {k: _references_only(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_references_only(v) for v in node]
    if isinstance(node, str) and KEY_VAULT_REFERENCE.search(node):
        return ""
    return node


def test_no_azure_file_holds_a_credential() -> None:
    for path in sorted(AZURE.iterdir()):
        docs = [json.loads(path.read_text())] if path.suffix == ".json" else load_yaml_documents(path)
        for doc in docs:
            assert not literal_secrets(_references_only(doc), path.name)
        assert not CREDENTIAL_SHAPES.search(path.read_text()), path.name
    assert CREDENTIAL_SHAPES.search("rediss://:k3y@x.redis.cache.windows.net:6380/0")


def test_every_azure_environment_name_is_a_setting() -> None:
    for name in CONTAINER_APPS:
        (container,) = app(name)["properties"]["template"]["containers"]
        names = {item["name"] for item in container.get("env", [])}
        assert names <= SETTINGS, (name, names - SETTINGS)
    process, platform, _ = app_service_process()
    assert set(process.env) <= SETTINGS and set(platform) == APP_SERVICE_PLATFORM


# -- one VM with TLS: Caddy in front of docker-compose.yml ------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """Compose's `!reset` tag (drop what the base file set) read as None."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"


def caddy_routes() -> tuple[list[tuple[set[str], set[str], str]], str]:
    """([(methods, paths, upstream)], what everything else gets) from the site block of the Caddyfile."""
    text = "\n".join(line.split("#", 1)[0] for line in CADDYFILE.read_text().splitlines())
    matchers = {
        name: (set(methods.split()), set(paths.split()))
        for name, methods, paths in re.findall(
            r"@(\w+)\s*\{\s*method ([^\n]+)\n\s*path ([^\n]+)\n\s*\}", text
        )
    }
    routes = []
    for name, body in re.findall(r"handle @(\w+)\s*\{(.*?)\n\t\}", text, re.S):
        (upstream,) = re.findall(r"reverse_proxy (\S+)", body)
        routes.append((*matchers[name], upstream))
    rest = re.search(r"handle\s*\{\s*(respond \d+)\s*\}", text)
    assert rest is not None, "everything else must get an answer of the proxy's own"
    return routes, rest.group(1)


def test_the_proxy_routes_only_the_webhooks_and_health(
    serve_routes: set[tuple[str, str]],  # noqa: F811
) -> None:
    routes, rest = caddy_routes()
    assert rest == "respond 404"
    posts = {path for method, path in serve_routes if method == "POST"}
    routed = {(method, path) for methods, paths, _ in routes for method in methods for path in paths}
    assert routed == {("POST", p) for p in posts} | {("GET", "/health"), ("HEAD", "/health")}
    assert posts == {"/slack/events", "/api/messages"}
    compose = yaml.load((ROOT / "docker-compose.yml").read_text(), Loader=yaml.SafeLoader)
    bot = compose["services"]["bot"]
    port = Process("tls", "serve", {k: str(v) for k, v in bot["environment"].items()}, 1).setting("PORT")
    assert {upstream for *_, upstream in routes} == {f"bot:{port}"}


def test_the_tls_override_publishes_only_the_proxy() -> None:
    override = yaml.load((ROOT / "docker-compose.tls.yml").read_text(), Loader=_ComposeLoader)
    services = override["services"]
    assert services["bot"] == {"ports": None}, "the bot's port must not be published past the proxy"
    caddy = services["caddy"]
    assert {p.split(":")[0] for p in caddy["ports"]} == {"80", "443"}, "80: the ACME challenge and redirect"
    assert f"./{CADDYFILE.relative_to(ROOT)}:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert any(v.startswith("caddy-data:/data") for v in caddy["volumes"]), "certificates survive restarts"
    assert caddy["depends_on"]["bot"]["condition"] == "service_healthy"
    assert set(caddy["environment"]) == set(re.findall(r"\{\$(\w+)\}", CADDYFILE.read_text()))


def test_readme_documents_the_azure_and_vm_recipes() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy") : readme.index("## Operations")]
    for path in [*sorted(AZURE.iterdir()), ROOT / "docker-compose.tls.yml", CADDYFILE]:
        assert path.name in deploy, f"the README's Deploy section does not mention {path.name}"
