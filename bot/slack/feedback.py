"""👍/👎 clicks on answers: a structured log line and a counter (Prometheus comes with issue 5)."""

from __future__ import annotations

from collections import Counter

import structlog

from bot.slack.translate import Feedback

log = structlog.get_logger(__name__)


class FeedbackLog:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def record(self, feedback: Feedback) -> None:
        self.counts[feedback.vote] += 1
        log.info(
            "answer_feedback",
            platform="slack",
            vote=feedback.vote,
            user=feedback.user,
            workspace=f"slack-{feedback.team}",
            channel=feedback.channel,
            message_ts=feedback.message_ts,
            event_id=feedback.event_id,
        )
