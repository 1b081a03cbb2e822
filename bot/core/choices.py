"""Who may see the documents of an upload in a direct message: the sender chooses with buttons, and
DEFAULT_UPLOAD_SCOPE applies when they do not within UPLOAD_CHOICE_MINUTES.

Until then the new documents answer only their sender (nothing is shown to others before anyone
chose). `ScopeChooser` (the job handler's) keeps a record of each upload it offered a choice on
(`Choices`); a click finds the upload by its key, and a timer (`ChoiceTimer`, in `threadwise serve`)
submits the default's job when its time comes. The records live in this process or in Redis, like
the other shared state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import structlog

from bot.core import text
from bot.core.model import Job, Reply, ScopeOffer, Terms
from bot.core.ports import JobRunner
from rag.documents import NoSuchDocument, NotYourDocument
from rag.engine import Engine
from rag.scopes import WORKSPACE, channel_scope, is_scope, private_scope
from rag.types import IngestResult

log = structlog.get_logger(__name__)

KEEP_S = 7 * 24 * 3600.0  # how long an upload's buttons keep working
TICK_S = 15.0  # how often the timer looks for uploads whose time has come


@dataclass(frozen=True)
class PendingUpload:
    """An upload offered a choice: its documents, whose they are, and what happens without a choice
    (`job`: the job that applies `default`, as plain data)."""

    key: str
    kb: str
    user: str
    names: tuple[str, ...]  # what a click applies to
    waiting: tuple[str, ...]  # the new documents, which answer only their sender until a choice
    default: str  # the scope the waiting documents get if no one chooses
    provisional: str  # the scope they have until then; the default replaces only that one
    job: dict[str, Any]

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str | bytes) -> PendingUpload:
        data = json.loads(raw)
        return cls(**{**data, "names": tuple(data["names"]), "waiting": tuple(data["waiting"])})


class Choices(Protocol):
    async def keep(self, upload: PendingUpload, *, due: float | None) -> None:
        """Remember `upload` (for KEEP_S); with `due` (Unix time), its default applies then. Its
        waiting documents wait for its default from now on, no longer for an earlier upload's."""
        ...

    async def get(self, key: str) -> PendingUpload | None: ...

    async def settle(self, upload: PendingUpload) -> None:
        """Someone chose for `upload`: no default applies to its documents any more, neither its own
        nor that of an earlier upload of the same documents by the same sender (another sender's
        document of a name since deleted and sent again by them keeps its own wait)."""
        ...

    async def due(self, now: float) -> list[PendingUpload]:
        """The uploads whose default's time has come, each given to one caller only."""
        ...

    async def claim(self, upload: PendingUpload) -> tuple[str, ...]:
        """The waiting documents of `upload` that still wait for its default (no one chose for them
        since, and no later upload waits for them), each given to one caller only: what the
        default may change when its job runs, however long it waited in a queue."""
        ...


class MemoryChoices:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._uploads: dict[str, tuple[float, PendingUpload]] = {}  # key → (forgotten at, upload)
        self._due: dict[str, float] = {}
        # (kb, sender, document) → the upload of that sender's whose default the document waits for
        self._waiting: dict[tuple[str, str, str], str] = {}
        self._clock = clock

    async def keep(self, upload: PendingUpload, *, due: float | None) -> None:
        now = self._clock()
        for key in [k for k, (until, _) in self._uploads.items() if until < now]:
            del self._uploads[key]
        for doc in [d for d, key in self._waiting.items() if key not in self._uploads]:
            del self._waiting[doc]
        self._uploads[upload.key] = (now + KEEP_S, upload)
        if due is not None:
            self._due[upload.key] = due
        for name in upload.waiting:
            self._waiting[(upload.kb, upload.user, name)] = upload.key

    async def get(self, key: str) -> PendingUpload | None:
        kept = self._uploads.get(key)
        return kept[1] if kept is not None and kept[0] >= self._clock() else None

    async def settle(self, upload: PendingUpload) -> None:
        self._due.pop(upload.key, None)
        for name in upload.names:
            self._waiting.pop((upload.kb, upload.user, name), None)

    async def due(self, now: float) -> list[PendingUpload]:
        keys = [k for k, when in self._due.items() if when <= now]
        for key in keys:
            del self._due[key]
        return [kept[1] for k in keys if (kept := self._uploads.get(k)) is not None]

    async def claim(self, upload: PendingUpload) -> tuple[str, ...]:
        waits = {n: (upload.kb, upload.user, n) for n in upload.waiting}
        mine = tuple(n for n, at in waits.items() if self._waiting.get(at) == upload.key)
        for name in mine:
            del self._waiting[waits[name]]
        return mine


class ChoiceTimer:
    """Submits each upload's default job when its time comes (a task of `threadwise serve`; with
    Redis, every replica runs one and each upload's default is taken by one of them)."""

    def __init__(
        self, *, choices: Choices, runner: JobRunner, platforms: Mapping[str, Terms], tick: float = TICK_S
    ) -> None:
        self._choices = choices
        self._runner = runner
        self._platforms = platforms
        self._tick = tick
        self._task: asyncio.Task[None] | None = None

    async def run_due(self) -> int:
        """Submit the defaults due now; how many."""
        due = await self._choices.due(time.time())
        for upload in due:
            try:
                await self._runner.submit(Job.from_dict(upload.job, self._platforms))
            except Exception:  # one bad record (a platform no longer enabled) must not stop the rest
                log.exception("upload_default_failed", key=upload.key, kb=upload.kb)
        return len(due)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="upload-choice-timer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:  # Redis away for a moment: the next tick tries again
                log.exception("upload_choice_timer_failed")
            await asyncio.sleep(self._tick)


class ScopeChooser:
    """Who may ask about a direct-message upload's documents: the scope a new one gets, the offer
    under the upload's reply (and its default's timer), and a click or the default when it comes."""

    def __init__(
        self,
        *,
        engine: Engine,
        choices: Choices,
        default_upload_scope: Literal["workspace", "private"],
        minutes: float,
    ) -> None:
        self._engine = engine
        self._choices = choices
        self._default = default_upload_scope  # DEFAULT_UPLOAD_SCOPE
        self._minutes = minutes  # UPLOAD_CHOICE_MINUTES

    def new_scope(self, job: Job) -> str:
        """Who may see a new document sent here: the scope the sender named ("for #channel"); a
        channel's file, that channel; a direct message's, its sender alone until they choose (or
        DEFAULT_UPLOAD_SCOPE at once when UPLOAD_CHOICE_MINUTES is 0). A replaced one keeps its own."""
        if job.scope:
            return job.scope
        if job.place.startswith("channel:"):
            return job.place
        if _offering(job) and (self._default == "private" or self._minutes > 0):
            return job.place
        return WORKSPACE

    async def offer(self, job: Job, results: Sequence[IngestResult]) -> ScopeOffer | None:
        """Buttons to choose who may ask about an upload's documents, and the default's timer for the
        new ones that answer only their sender until then; None for an upload that named its scope or
        was not sent in a direct message."""
        if not results or not _offering(job):
            return None
        default = WORKSPACE if self._default == "workspace" else job.place
        waiting = tuple(r.document for r in results if r.status == "added" and r.scope != default)
        later = Job(
            id=f"{job.id}:default",
            kind="command",
            platform=job.platform,
            kb=job.kb,
            user=job.user,
            text="",
            thread=job.thread,
            address=job.address,
            place=job.place,
            choice=job.id,
        )
        upload = PendingUpload(
            job.id,
            job.kb,
            job.user,
            tuple(r.document for r in results),
            waiting,
            default,
            job.place,
            later.to_dict(),
        )
        due = time.time() + 60 * self._minutes if waiting else None
        await self._choices.keep(upload, due=due)
        return ScopeOffer(job.id, upload.names, default if waiting else "", self._minutes)

    async def choose(self, job: Job) -> Reply:
        """A click on an upload's buttons (`job.scope`: the scope chosen), or its default's time come
        (no scope): the documents' new scope, one manifest write each. The reply replaces the message
        clicked, unless the click is refused: that reply is for the clicker alone (ephemeral)."""
        upload = await self._choices.get(job.choice)
        if upload is None:
            return Reply(text.CHOICE_EXPIRED, kind="error")
        if upload.kb != job.kb or (job.user != upload.user and not job.is_admin):
            return Reply(text.CHOICE_NOT_YOURS, kind="error", ephemeral=True)
        by_default = not job.scope
        scope = upload.default if by_default else job.scope
        if not _may_choose(scope, upload.user):
            return Reply(text.CHOICE_EXPIRED, kind="error")
        # The default changes only the documents still waiting for it (however long its job waited
        # in a queue): a choice made since, with these buttons or another upload's, is never undone.
        if by_default:
            names = await self._choices.claim(upload)
        else:
            await self._choices.settle(upload)
            names = upload.names
        changed: list[str] = []
        gone: list[str] = []
        for name in names:
            try:
                info = await self._engine.set_scope(
                    job.kb,
                    name,
                    scope,
                    user=None if job.is_admin else upload.user,
                    unless_changed_from=upload.provisional if by_default else None,
                )
            except (NoSuchDocument, NotYourDocument):  # deleted or replaced by another meanwhile
                gone.append(name)
                continue
            if info is not None:
                changed.append(info.name)
        offer = ScopeOffer(upload.key, upload.names, minutes=self._minutes)
        said = text.scope_chosen(changed, scope, place=job.place, by_default=by_default, gone=gone)
        return Reply(said, offer=offer)


def _offering(job: Job) -> bool:
    """An upload in a direct message that named no scope: its sender chooses who may ask about it."""
    return job.place.startswith(private_scope("")) and not job.scope


def _may_choose(scope: str, uploader: str) -> bool:
    """What an upload's sender may choose: the workspace, themselves, or a channel."""
    return scope in (WORKSPACE, private_scope(uploader)) or (
        scope.startswith(channel_scope("")) and is_scope(scope)
    )
