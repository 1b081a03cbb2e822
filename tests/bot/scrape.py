"""Reading GET /metrics as Prometheus would: the text format parsed by prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    families: dict[str, str]  # family name → type ("counter", "histogram", "gauge")
    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float | None:
        """The one sample called `name` whose labels include `labels`; None when there is none."""
        found = [s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def labels(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


async def scrape(client: TestClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain")
    families = list(text_string_to_metric_families(await response.text()))
    return Scrape({f.name: f.type for f in families}, [s for f in families for s in f.samples])
