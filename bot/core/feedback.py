"""👍/👎 on answers, from any platform: one structured log line each, one counted vote per person
per answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog

from bot.core.state import MemoryVoteBook, VoteBook
from bot.core.telemetry import NullTelemetry, Telemetry

log = structlog.get_logger(__name__)

Vote = Literal["up", "down"]

# Why an answer was not good, as a 👎's form offers it: key -> what the person reads.
REASONS = {
    "wrong": "Wrong",
    "outdated": "Out of date",
    "not_in_documents": "Not in the documents",
    "other": "Other",
}
COMMENT_LIMIT = 500  # characters of a person's own words kept with a vote


@dataclass(frozen=True)
class FeedbackVote:
    platform: str  # "slack" | "teams"
    workspace: str  # "slack-T…", "teams-<tenant>": the knowledge base follows from it
    user: str
    vote: Vote
    ref: str  # the answer voted on: its Reply.ref, or the id `finish` returned for its message
    reason: str = ""  # a key of REASONS, or "" (none given yet: a reason may follow the vote)
    comment: str = ""  # what the person typed, if anything


class FeedbackRecorder:
    """The one place votes go; platforms translate a click into a `FeedbackVote` and call `record`.

    A click can arrive again (a double click, a replayed request, a redelivery), so each person's
    vote on an answer is remembered in `votes` — shared by every process when it lives in Redis —
    and counted once: the first vote is counted, the same vote again is ignored, and a changed vote
    is logged (`replaces`) but not counted again, so one person never weighs twice.
    """

    def __init__(
        self,
        *,
        kb_for: Callable[[str], str] = lambda ws: ws,
        telemetry: Telemetry | None = None,
        votes: VoteBook | None = None,
    ) -> None:
        self._kb_for = kb_for
        self._telemetry = telemetry or NullTelemetry()
        self._votes: VoteBook = votes or MemoryVoteBook()

    async def record(self, vote: FeedbackVote) -> None:
        kb = self._kb_for(vote.workspace)
        bound = log.bind(
            platform=vote.platform, workspace=vote.workspace, kb=kb, user=vote.user, ref=vote.ref
        )
        try:
            previous = await self._votes.cast(f"{vote.platform}:{vote.ref}:{vote.user}", vote.vote)
        except Exception as exc:  # Redis away: better a vote lost than counted twice
            bound.warning("answer_feedback_not_recorded", vote=vote.vote, error=type(exc).__name__)
            return
        if previous == vote.vote:
            bound.info("answer_feedback_repeated", vote=vote.vote)
            return
        if previous is None:
            self._telemetry.feedback(vote.platform, kb, vote.vote)
        bound.info("answer_feedback", vote=vote.vote, replaces=previous)
