"""What the chat core reports about its work: request outcomes, stage timings, feedback votes.

The core only knows this Protocol; `bot.infra.metrics.Metrics` implements it with Prometheus, built in the
composition root. Without one, `NullTelemetry` drops everything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

# How one user message ended. `refused`: a reason the user can act on (too big, not allowed, …);
# `error`: our fault, the user got an apology.
Outcome = Literal["answered", "refused", "error", "duplicate", "rate_limited"]
OUTCOMES: tuple[Outcome, ...] = ("answered", "refused", "error", "duplicate", "rate_limited")

# Where a job's time goes. The engine reports extract, embed, store, search and llm; the handler
# reports download (fetching the file from the platform) and reply (delivering the answer).
STAGES = ("download", "extract", "embed", "store", "search", "llm", "reply")


class Telemetry(Protocol):
    def request(self, platform: str, kind: str, outcome: Outcome) -> None:
        """One user message ended this way."""
        ...

    def stage(self, stage: str, seconds: float) -> None:
        """One step of a job took this long (called from worker threads too)."""
        ...

    def job(self, kind: str, seconds: float) -> None:
        """A whole job, from its start in the runner to its reply."""
        ...

    def rate_limited(self, platform: str, kb: str) -> None: ...

    def feedback(self, platform: str, kb: str, vote: str) -> None: ...


class NullTelemetry:
    def request(self, platform: str, kind: str, outcome: Outcome) -> None:
        pass

    def stage(self, stage: str, seconds: float) -> None:
        pass

    def job(self, kind: str, seconds: float) -> None:
        pass

    def rate_limited(self, platform: str, kb: str) -> None:
        pass

    def feedback(self, platform: str, kb: str, vote: str) -> None:
        pass


@contextmanager
def timed(telemetry: Telemetry, stage: str) -> Iterator[None]:
    """Report how long the block took as `stage`, whether it succeeded or not."""
    started = time.perf_counter()
    try:
        yield
    finally:
        telemetry.stage(stage, time.perf_counter() - started)
