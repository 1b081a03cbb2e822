"""👍/👎 on answers, from any platform: one structured log line and one counted vote each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog

from bot.core.telemetry import NullTelemetry, Telemetry

log = structlog.get_logger(__name__)

Vote = Literal["up", "down"]


@dataclass(frozen=True)
class FeedbackVote:
    platform: str  # "slack" | "teams"
    workspace: str  # "slack-T…", "teams-<tenant>": the knowledge base follows from it
    user: str
    vote: Vote
    ref: str  # the question the answer was for: Slack's event id, Teams' activity id


class FeedbackRecorder:
    """The one place votes go; platforms translate a click into a `FeedbackVote` and call `record`."""

    def __init__(
        self, *, kb_for: Callable[[str], str] = lambda ws: ws, telemetry: Telemetry | None = None
    ) -> None:
        self._kb_for = kb_for
        self._telemetry = telemetry or NullTelemetry()

    def record(self, vote: FeedbackVote) -> None:
        kb = self._kb_for(vote.workspace)
        self._telemetry.feedback(vote.platform, kb, vote.vote)
        log.info(
            "answer_feedback",
            platform=vote.platform,
            workspace=vote.workspace,
            kb=kb,
            user=vote.user,
            vote=vote.vote,
            ref=vote.ref,
        )
