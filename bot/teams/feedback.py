"""👍/👎 on answers: one structured log line each, and counts in memory (issue 5 exports them)."""

from __future__ import annotations

from collections import Counter

import structlog

from bot.teams.translate import PLATFORM, Feedback

log = structlog.get_logger(__name__)


class FeedbackRecorder:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()  # (platform, vote) → votes

    def record(self, feedback: Feedback, *, kb: str) -> None:
        self.counts[(PLATFORM, feedback.vote)] += 1
        log.info(
            "feedback",
            platform=PLATFORM,
            kb=kb,
            user=feedback.user,
            vote=feedback.vote,
            ref=feedback.ref,
        )
