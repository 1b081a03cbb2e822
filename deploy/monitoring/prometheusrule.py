"""Write deploy/k8s/monitoring/prometheusrule.yaml from deploy/monitoring/alerts.yml (the same groups,
as a Prometheus Operator PrometheusRule). Run after editing alerts.yml: python deploy/monitoring/prometheusrule.py"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "alerts.yml"
TARGET = HERE.parent / "k8s" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# deploy/monitoring/alerts.yml as a PrometheusRule (the same groups: tests/test_monitoring.py).\n"
    "# After editing alerts.yml, regenerate it: python deploy/monitoring/prometheusrule.py\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, as they are written in alerts.yml."""


def _text(dumper: yaml.SafeDumper, value: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "threadwise", "namespace": "threadwise", "labels": {"release": "prometheus"}},
        "spec": {"groups": groups},
    }


def render() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    body = yaml.dump(prometheus_rule(groups), Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    return HEADER + body


if __name__ == "__main__":
    TARGET.write_text(render())
