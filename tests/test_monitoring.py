"""The alert rules, the dashboard and the PrometheusRule agree with what threadwise really exports.

A real `threadwise serve` and `threadwise worker` (RUNNER=queue, on Redis and a Chroma server) are
started and their /metrics scraped; every metric the rules and the dashboard name must be there, with
every label they select or group by. The rules must pass `promtool check rules` (Debian's `prometheus`
package; .ci/run installs it) and, always, a schema check of their own.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import Processes, free_port, http_status, until

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "monitoring" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "dashboard.json"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
_SELECTOR = re.compile(r"\b((?:threadwise|process)_[a-z_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_DURATION = re.compile(r"^\d+[smhd]$")


def rule_groups() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert isinstance(groups, list) and groups
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_alert_rules_have_the_shape_prometheus_loads() -> None:
    names = set()
    for group in rule_groups():
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"], group
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]) and rule["alert"] not in names
            names.add(rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert _DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"page", "ticket"}
            assert {"summary", "description"} <= set(rule["annotations"])


def test_the_rules_cover_the_figures_operators_watch() -> None:
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    for figure in (
        'kind="ask", outcome="error"',  # error rate of answers
        'kind="ingest", outcome="error"',  # … and of ingests
        "histogram_quantile(0.95",  # p95 answer latency
        "threadwise_queue_jobs",  # queue depth
        "threadwise_queue_oldest_job_seconds",  # oldest job age
        "threadwise_ready_check_up",  # /ready failing
        "threadwise_backup_last_success_timestamp_seconds) > 26 * 3600",  # backups missing > 26 h
        "threadwise_stage_errors_total",  # model or store errors
        "process_resident_memory_bytes / threadwise_memory_limit_bytes",  # memory near its limit
    ):
        assert figure in exprs, figure


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); the schema check above ran")
    result = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_the_prometheus_rule_holds_the_same_groups() -> None:
    import runpy

    script = runpy.run_path(str(ROOT / "deploy" / "monitoring" / "prometheusrule.py"))
    assert PROMETHEUS_RULE.read_text() == script["render"](), "run python deploy/monitoring/prometheusrule.py"
    (doc,) = yaml.safe_load_all(PROMETHEUS_RULE.read_text())
    assert doc["kind"] == "PrometheusRule" and doc["spec"]["groups"] == rule_groups()
    kustomization = yaml.safe_load((PROMETHEUS_RULE.parent / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {"..", "podmonitor.yaml", "prometheusrule.yaml"}


def test_the_pod_monitor_scrapes_the_ports_the_pods_name() -> None:
    monitor = yaml.safe_load((PROMETHEUS_RULE.parent / "podmonitor.yaml").read_text())
    k8s = ROOT / "deploy" / "k8s"
    ports = {}
    for name in ("serve.yaml", "worker.yaml"):
        for doc in yaml.safe_load_all((k8s / name).read_text()):
            if doc and doc["kind"] == "Deployment":
                labels = doc["spec"]["template"]["metadata"]["labels"]
                assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
                (container,) = doc["spec"]["template"]["spec"]["containers"]
                ports.update({p["name"]: container["args"][0] for p in container["ports"]})
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert {ports[e["port"]] for e in endpoints} == {"serve", "worker"}
    assert all(e["path"] == "/metrics" for e in endpoints)


# -- every metric and label named is exported ----------------------------------------------------------


def selections(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric, {label: (operator, value)}) for each series selector in a PromQL expression."""
    return [
        (name, {label: (op, value) for label, op, value in _MATCHER.findall(matchers or "")})
        for name, matchers in _SELECTOR.findall(expr)
    ]


def test_selections_are_read_from_promql() -> None:
    expr = 'sum by (le) (rate(threadwise_job_seconds_bucket{kind="ask", outcome=~"a|b"}[5m])) / x'
    assert selections(expr) == [
        ("threadwise_job_seconds_bucket", {"kind": ("=", "ask"), "outcome": ("=~", "a|b")})
    ]
    assert _GROUPING.findall(expr) == ["le"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """sample name → label → values, from /metrics of a running serve and worker (queue mode)."""
    return asyncio.run(_scrape_processes(tmp_path_factory.mktemp("monitoring")))


async def _scrape_processes(root: Path) -> dict[str, dict[str, set[str]]]:
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    with Processes(root) as procs:
        redis = await procs.redis()
        _, chroma_port = await procs.chroma()
        port, worker_port = free_port(), free_port()
        env = {
            "RUNNER": "queue",
            "REDIS_URL": redis,
            "CHROMA_HOST": "127.0.0.1",
            "CHROMA_PORT": str(chroma_port),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKER_METRICS_PORT": str(worker_port),
            "BACKUP_DIR": str(root / "backups"),
        }
        serve = procs.threadwise("serve", "serve", env=env)
        worker = procs.threadwise("worker", "worker", env=env)
        urls = [f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{worker_port}/metrics"]

        async def answering(url: str) -> bool:
            return await http_status(url) == 200

        await until(lambda: answering(f"http://127.0.0.1:{port}/ready"), 60, serve)
        await until(lambda: answering(urls[1]), 180, worker)
        async with aiohttp.ClientSession() as session:
            for url in urls:
                async with session.get(url) as response:
                    for family in text_string_to_metric_families(await response.text()):
                        for sample in family.samples:
                            labels = found[sample.name]
                            for label, value in sample.labels.items():
                                labels[label].add(value)
                            labels.setdefault("__name__", set())
    return found


def _check_expr(expr: str, exported: dict[str, dict[str, set[str]]]) -> None:
    named = selections(expr)
    assert named, expr
    labels_there: set[str] = set(TARGET_LABELS)
    for name, matchers in named:
        assert name in exported, f"{name} is not exported by serve or worker ({expr})"
        labels = exported[name]
        labels_there |= set(labels) - {"__name__"}
        for label, (op, value) in matchers.items():
            assert label in labels, f"{name} has no label {label}"
            if op == "=":
                assert value in labels[label], f'{name}{{{label}="{value}"}} is never exported'
            elif op == "=~":
                for alternative in value.split("|"):
                    assert alternative in labels[label], f"{name}: {label} is never {alternative}"
    for grouping in _GROUPING.findall(expr):
        for label in filter(None, (g.strip() for g in grouping.split(","))):
            assert label in labels_there, f"grouped by {label}, which none of {named} carries"


def test_every_metric_the_rules_name_is_exported_with_its_labels(
    exported: dict[str, dict[str, set[str]]],
) -> None:
    for rule in alert_rules():
        _check_expr(rule["expr"], exported)
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert re.search(rf"by \([^)]*\b{label}\b", rule["expr"]) or label in TARGET_LABELS, (
                    rule["alert"],
                    label,
                )


def test_every_metric_the_dashboard_shows_is_exported_with_its_labels(
    exported: dict[str, dict[str, set[str]]],
) -> None:
    for expr in dashboard_exprs():
        _check_expr(expr, exported)
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for label in re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")):
                assert label in TARGET_LABELS or re.search(rf"by \([^)]*\b{label}\b", target["expr"]), label


def test_the_dashboard_shows_every_alerted_metric() -> None:
    shown = {name for expr in dashboard_exprs() for name, _ in selections(expr)}
    alerted = {name for rule in alert_rules() for name, _ in selections(rule["expr"])}
    assert alerted <= shown, alerted - shown
