"""👍/👎 on answers, from any platform: one vote per person per answer, kept with what the answer was.

A platform translates a click (or a form's reason) into a `FeedbackVote` and hands it to
`FeedbackRecorder.record`. The job handler notes every answer it gives (`note`): its question, how it
was written, the documents it cites; a vote is stored with that note, so `threadwise feedback` can say
what people disliked and why. Where votes are kept is a `FeedbackBook`: in memory (tests, one
process), a SQLite file (one machine), or Redis (several bot processes: bot/infra/redis_state.py).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol

import structlog

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
QUESTION_LIMIT = 500  # characters of the question kept with an answer's note
VOTE_TTL_S = 90 * 86400.0  # how long votes and notes are kept: longer than anyone clicks on an answer


@dataclass(frozen=True)
class FeedbackVote:
    platform: str  # "slack" | "teams"
    workspace: str  # "slack-T…", "teams-<tenant>": the knowledge base follows from it
    user: str
    vote: Vote
    ref: str  # the answer voted on: its Reply.ref, or the id `finish` returned for its message
    reason: str = ""  # a key of REASONS, or "" (none given yet: a reason may follow the vote)
    comment: str = ""  # what the person typed, if anything


@dataclass(frozen=True)
class AnswerNote:
    """What an answer was, for the votes on it."""

    kb: str
    question: str
    mode: str  # "llm" | "extractive" | "not_found"
    documents: tuple[str, ...]  # the documents it cites, in order

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnswerNote:
        return cls(
            kb=str(data["kb"]),
            question=str(data["question"]),
            mode=str(data["mode"]),
            documents=tuple(str(d) for d in data.get("documents") or ()),
        )


@dataclass(frozen=True)
class VoteRecord:
    """A person's vote on an answer as it is kept: the latest vote, and the latest reason given."""

    platform: str
    kb: str
    user: str
    ref: str  # as the vote named the answer
    vote: Vote
    at: float  # when it was cast (epoch seconds)
    reason: str = ""
    comment: str = ""
    note: AnswerNote | None = None  # None: the answer is not known (given before notes were kept)

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.ref}:{self.user}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VoteRecord:
        note = data.get("note")
        vote: Vote = "up" if data["vote"] == "up" else "down"
        return cls(
            platform=str(data["platform"]),
            kb=str(data["kb"]),
            user=str(data["user"]),
            ref=str(data["ref"]),
            vote=vote,
            at=float(data["at"]),
            reason=str(data.get("reason") or ""),
            comment=str(data.get("comment") or ""),
            note=AnswerNote.from_dict(note) if isinstance(note, Mapping) and note else None,
        )


def merged(previous: VoteRecord | None, record: VoteRecord) -> VoteRecord:
    """What is kept when `record` follows `previous`: the same vote again without a reason (a
    repeated click) keeps the reason given before."""
    if previous is None or previous.vote != record.vote:
        return record
    return replace(
        record, reason=record.reason or previous.reason, comment=record.comment or previous.comment
    )


class FeedbackBook(Protocol):
    async def note(self, platform: str, refs: Sequence[str], note: AnswerNote) -> None:
        """Remember what the answer known by each of `refs` was."""
        ...

    async def noted(self, platform: str, ref: str) -> AnswerNote | None: ...

    async def cast(self, record: VoteRecord) -> VoteRecord | None:
        """Keep merged(previous, record) as the vote of its person on its answer, in one step that
        concurrent casts cannot interleave; returns the previous record (None: the first vote)."""
        ...

    async def votes(self, *, since: float, kb: str | None = None) -> list[VoteRecord]:
        """The votes cast (or changed) since `since` (epoch seconds), newest first."""
        ...


class MemoryFeedbackBook:
    """Votes and notes of this process; the oldest forgotten first, past `max_keys` or `ttl`."""

    def __init__(
        self, *, ttl: float = VOTE_TTL_S, max_keys: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._votes: OrderedDict[str, VoteRecord] = OrderedDict()
        self._notes: OrderedDict[str, tuple[AnswerNote, float]] = OrderedDict()
        self._ttl = ttl
        self._max = max_keys
        self._clock = clock

    async def note(self, platform: str, refs: Sequence[str], note: AnswerNote) -> None:
        now = self._clock()
        for ref in refs:
            self._notes.pop(f"{platform}:{ref}", None)
            self._notes[f"{platform}:{ref}"] = (note, now)
        while self._notes and (
            len(self._notes) > self._max or now - next(iter(self._notes.values()))[1] > self._ttl
        ):
            self._notes.popitem(last=False)

    async def noted(self, platform: str, ref: str) -> AnswerNote | None:
        found = self._notes.get(f"{platform}:{ref}")
        return found[0] if found else None

    async def cast(self, record: VoteRecord) -> VoteRecord | None:
        now = self._clock()
        while self._votes and (
            len(self._votes) >= self._max or now - next(iter(self._votes.values())).at > self._ttl
        ):
            self._votes.popitem(last=False)
        previous = self._votes.pop(record.key, None)
        self._votes[record.key] = merged(previous, record)
        return previous

    async def votes(self, *, since: float, kb: str | None = None) -> list[VoteRecord]:
        found = [r for r in self._votes.values() if r.at >= since and (kb is None or r.kb == kb)]
        return sorted(found, key=lambda r: r.at, reverse=True)


class FeedbackRecorder:
    """The one place votes go. A click can arrive again (a double click, a replayed request, a
    redelivery), so each person's vote on an answer is kept once — in a book every process shares
    when it lives in Redis: the first vote is counted, the same vote again is not (a reason it brings
    is kept), and a changed vote replaces the old one but is not counted again, so one person never
    weighs twice."""

    def __init__(
        self,
        *,
        kb_for: Callable[[str], str] = lambda ws: ws,
        telemetry: Telemetry | None = None,
        book: FeedbackBook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kb_for = kb_for
        self._telemetry = telemetry or NullTelemetry()
        self._book: FeedbackBook = book or MemoryFeedbackBook()
        self._clock = clock

    @property
    def book(self) -> FeedbackBook:
        return self._book

    async def note(self, platform: str, refs: Sequence[str], note: AnswerNote) -> None:
        """Remember an answer (best effort: an answer is never failed for its note)."""
        refs = [r for r in dict.fromkeys(refs) if r]
        try:
            await self._book.note(platform, refs, replace(note, question=note.question[:QUESTION_LIMIT]))
        except Exception as exc:
            log.warning("answer_note_not_kept", platform=platform, error=type(exc).__name__)

    async def record(self, vote: FeedbackVote) -> None:
        bound = log.bind(platform=vote.platform, workspace=vote.workspace, user=vote.user, ref=vote.ref)
        reason = vote.reason if vote.reason in REASONS else ""
        try:
            note = await self._book.noted(vote.platform, vote.ref)
            kb = note.kb if note is not None else self._kb_for(vote.workspace)
            comment = vote.comment.strip()[:COMMENT_LIMIT]
            record = VoteRecord(
                vote.platform, kb, vote.user, vote.ref, vote.vote, self._clock(), reason, comment, note
            )
            previous = await self._book.cast(record)
        except Exception as exc:  # the store away: better a vote lost than counted twice
            bound.warning("answer_feedback_not_recorded", vote=vote.vote, error=type(exc).__name__)
            return
        bound = bound.bind(kb=kb, vote=vote.vote, reason=reason or None)
        if previous is None:
            self._telemetry.feedback(vote.platform, kb, vote.vote)
        elif previous.vote == vote.vote and not reason and not record.comment:
            bound.info("answer_feedback_repeated")
            return
        bound.info(
            "answer_feedback", replaces=previous.vote if previous else None, commented=bool(record.comment)
        )
