"""Running a job: fetch files, call the engine, reply in the thread. The same code in any process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Literal

import structlog

from bot.core import text
from bot.core.choices import Choices, MemoryChoices, ScopeChooser
from bot.core.commands import name_candidates, parse_command
from bot.core.feedback import AnswerNote, FeedbackRecorder
from bot.core.model import Handle, IngestProgress, Job, PartialAnswer, Reply, ReplyKind, Update
from bot.core.ports import Outbound, ReplySender
from bot.core.state import ThreadMemory
from bot.core.telemetry import NullTelemetry, Outcome, Telemetry, timed
from rag.documents import NameTaken, NoSuchDocument, NotYourDocument
from rag.engine import Engine
from rag.errors import RetryableError, UserFacingError
from rag.names import normalize_name
from rag.scopes import (
    EVERYTHING,
    WORKSPACE_ONLY,
    Visibility,
    private_scope,
)
from rag.types import Answer, IngestResult, Turn

log = structlog.get_logger(__name__)

STREAM_INTERVAL_S = 1.0  # edit the working message at most about once a second

Ended = Literal["done", "timed out"]


class Messages:
    """One job's messages in its thread: the message shown now (its handle), which each update
    replaces with the next, and the final reply."""

    def __init__(self, sender: ReplySender, job: Job) -> None:
        self._sender = sender
        self._address = job.address
        self.handle: Handle | None = job.handle
        self._clicked = bool(job.choice)

    def keep_shown(self) -> None:
        """A failure or a refusal is told in a message of its own when the job is a click: the
        message clicked keeps its words and buttons (the sender's, to try again with)."""
        if self._clicked:
            self.handle = None

    async def update(self, update: Update) -> None:
        self.handle = await self._sender.update(self._address, self.handle, update)

    async def finish(self, reply: Reply) -> str | None:
        return await self._sender.finish(self._address, self.handle, reply)


class JobHandler:
    def __init__(
        self,
        *,
        engine: Engine,
        platforms: Mapping[str, Outbound],
        memory: ThreadMemory,
        max_file_mb: float,
        stream_interval: float = STREAM_INTERVAL_S,
        telemetry: Telemetry | None = None,
        feedback: FeedbackRecorder | None = None,
        choices: Choices | None = None,
        default_upload_scope: Literal["workspace", "private"] = "workspace",
        choice_minutes: float = 0.0,
    ) -> None:
        self._engine = engine
        self._platforms = platforms
        self._memory = memory
        self._max_file_mb = max_file_mb
        self._chooser = ScopeChooser(
            engine=engine,
            choices=choices or MemoryChoices(),
            default_upload_scope=default_upload_scope,
            minutes=choice_minutes,
        )
        self._interval = stream_interval
        self._telemetry = telemetry or NullTelemetry()
        self._feedback = feedback or FeedbackRecorder(telemetry=self._telemetry)

    async def run(self, job: Job, *, last_try: bool = True, deadline_s: float | None = None) -> Ended:
        """Do the job and always reply: with the result, a user-facing reason, or an apology.

        `last_try=False` (a queue worker with tries left): a RetryableError, of the work or of the
        reply, is raised for the queue to retry the job; on the last try (and in-process, where
        nothing retries) it gets the apology. `deadline_s`: past it the work stops (an ingest
        between two embedding batches) and the user is told it took too long.
        """
        messages = Messages(self._platforms[job.platform].sender, job)
        try:
            async with asyncio.timeout(deadline_s) as deadline:
                await self._run(job, messages, last_try=last_try)
        except TimeoutError:
            if not deadline.expired():
                raise
            log.error("job_timed_out", job_id=job.id, seconds=deadline_s)
            messages.keep_shown()
            await messages.finish(Reply(_wording(text.TIMED_OUT, job), kind="error"))
            return "timed out"
        return "done"

    async def apologise(self, job: Job) -> None:
        """Tell the user the job could not be done (a queue gave up on it), in place of its working
        message."""
        messages = Messages(self._platforms[job.platform].sender, job)
        messages.keep_shown()
        await messages.finish(_apology(job))

    async def _run(self, job: Job, messages: Messages, *, last_try: bool) -> None:
        bound = log.bind(job_id=job.id, platform=job.platform, kb=job.kb, user=job.user, kind=job.kind)
        started = time.perf_counter()
        outcome: Outcome = "answered"
        try:
            reply = await self._dispatch(job, messages)
            if reply.kind == "error":
                outcome = "refused"
        except UserFacingError as exc:
            reply, outcome = Reply(exc.message, kind="error"), "refused"
            bound.info("job_refused", reason=exc.message)
        except Exception as exc:
            if isinstance(exc, RetryableError) and not last_try:
                raise  # the queue runner retries with backoff
            bound.exception("job_failed")
            reply, outcome = _apology(job), "error"
            messages.keep_shown()
        try:
            with timed(self._telemetry, "reply"):
                shown = await messages.finish(reply)
        except Exception as exc:
            if isinstance(exc, RetryableError) and not last_try:
                raise  # counted on the retry
            self._count(job, "error", started)
            # The reply could not be shown (a platform refusing it, a rendering failure): the user
            # gets the apology instead of a working message that never ends. A platform out of
            # reach is left to the runner (a queue worker retries the whole job).
            if outcome == "error" or isinstance(exc, OSError) or not await _apologised(messages, job):
                raise
            bound.exception("reply_failed_apology_sent")
            return
        self._count(job, outcome, started)
        bound.info("job_done", seconds=round(time.perf_counter() - started, 3), outcome=reply.kind)
        if reply.feedback:  # what the answer was, for the votes on it
            await self._feedback.note(job.platform, [reply.ref, shown or ""], _note(job, reply))

    def _count(self, job: Job, outcome: Outcome, started: float) -> None:
        self._telemetry.request(job.platform, job.kind, outcome)
        self._telemetry.job(job.kind, time.perf_counter() - started)

    async def _dispatch(self, job: Job, messages: Messages) -> Reply:
        if job.choice:
            reply = await self._chooser.choose(job)
            if reply.ephemeral:  # refused: told to the clicker alone, the sender's reply keeps its buttons
                messages.keep_shown()
            return reply
        if job.kind == "ingest":
            return await self._ingest(job, messages)
        if job.kind == "command":
            return await self._command(job)
        return await self._ask(job, messages)

    async def _ask(self, job: Job, messages: Messages) -> Reply:
        if not job.text.strip():
            return Reply(text.EMPTY_QUESTION)
        history = await self._memory.history(job.thread)
        last = [0.0]

        async def on_delta(partial: str) -> None:
            now = time.monotonic()
            if now - last[0] >= self._interval:
                last[0] = now
                await messages.update(PartialAnswer(partial))

        visibility = _visibility(job)
        answer = await self._engine.ask(
            job.kb, job.text, history=history, on_delta=on_delta, visibility=visibility
        )
        await self._memory.append(job.thread, Turn("user", job.text), Turn("assistant", answer.text))
        return answer_reply(answer, ref=job.id)

    async def _ingest(self, job: Job, messages: Messages) -> Reply:
        fetcher = self._platforms[job.platform].fetcher
        max_bytes = self._engine.limits.max_bytes
        results: list[IngestResult] = []
        errors: list[str] = []
        for file in job.files:
            try:
                name = normalize_name(file.name)  # what the document will be called, in every reply
                self._engine.check_upload(name, file.size)
                with timed(self._telemetry, "download"):
                    data = await fetcher.fetch(file, max_bytes=max_bytes)
                progress = _Progress(messages, name, self._interval)
                result = await self._engine.ingest(
                    job.kb,
                    name,
                    data,
                    uploader=job.user,
                    url=file.permalink,
                    trusted=job.is_admin,
                    progress=progress,
                    scope=job.scope or None,
                    new_scope=self._chooser.new_scope(job),
                    sees=_listing(job),
                )
                await progress.flush()
                results.append(result)
            except NotYourDocument as exc:
                errors.append(text.REPLACE_DENIED.format(name=text.short(exc.name), uploader=_who(exc.owner)))
            except NameTaken:
                errors.append(text.NAME_TAKEN.format(name=text.short(name)))
            except UserFacingError as exc:
                errors.append(exc.message)
            except RetryableError:
                raise
            except Exception:
                log.exception("ingest_failed", job_id=job.id, document=text.short(file.name))
                errors.append(text.FILE_FAILED.format(name=text.short(file.name), ref=job.id[:12]))
        kind: ReplyKind = "error" if errors and not results else "info"
        offer = await self._chooser.offer(job, results)
        summary = text.ingest_summary(results, errors, place=job.place)
        return Reply(text.with_offer(summary, offer), kind=kind, offer=offer)

    async def _command(self, job: Job) -> Reply:
        command = parse_command(job.text)
        name = command.name if command else "help"
        if name == "docs":
            listed = await self._engine.documents(job.kb, visibility=_listing(job))
            return Reply(text.documents_list(listed), ephemeral=True)
        if name == "stats":
            return Reply(
                text.stats_text(await self._engine.stats(job.kb, visibility=_listing(job))), ephemeral=True
            )
        if name == "forget":
            return await self._forget(job, command.argument if command else "")
        ask_how = self._platforms[job.platform].ask_how
        return Reply(text.help_text(ask_how, self._max_file_mb), ephemeral=True)

    async def _forget(self, job: Job, argument: str) -> Reply:
        if not argument:
            return Reply(text.FORGET_USAGE, kind="error", ephemeral=True)
        for candidate in name_candidates(argument):
            found = await self._engine.document(job.kb, candidate)
            if found is not None and _listing(job).sees(found.scope):
                break
        else:  # none by that name here (another place's is not said to exist)
            return Reply(text.NO_SUCH_DOCUMENT.format(name=text.literal(text.short(argument))), kind="error")
        try:
            info = await self._engine.forget(job.kb, found.name, user=None if job.is_admin else job.user)
        except NotYourDocument as exc:
            denied = text.FORGET_DENIED.format(name=text.short(exc.name), uploader=_who(exc.owner))
            return Reply(denied, kind="error")
        except NoSuchDocument:  # deleted meanwhile
            return Reply(text.NO_SUCH_DOCUMENT.format(name=text.literal(text.short(argument))), kind="error")
        passages = text.plural(info.chunks, "passage")
        return Reply(text.FORGOTTEN.format(name=text.short(info.name), passages=passages))


def _visibility(job: Job) -> Visibility:
    """What a question may read where it was asked: the workspace's documents and the place's own."""
    return Visibility.of(job.place) if job.place else WORKSPACE_ONLY


def _listing(job: Job) -> Visibility:
    """What `docs`, `stats` and `forget` may name: an admin's in their direct messages (or the console),
    everything; anywhere else, what a question there reads — a reply in a channel or group chat may
    be read by all of it (Teams has no replies to one person, Slack's fall back to visible ones)."""
    private = not job.place or job.place.startswith(private_scope(""))
    return EVERYTHING if job.is_admin and private else _visibility(job)


def _who(uploader: str) -> str:
    return uploader or "unknown"


def _wording(template: str, job: Job) -> str:
    return template.format(doing=text.DOING[job.kind], ref=job.id[:12])


def _apology(job: Job) -> Reply:
    return Reply(_wording(text.INTERNAL_ERROR, job), kind="error")


async def _apologised(messages: Messages, job: Job) -> bool:
    try:
        messages.keep_shown()
        await messages.finish(_apology(job))
    except Exception:
        return False
    return True


def _note(job: Job, reply: Reply) -> AnswerNote:
    documents = tuple(dict.fromkeys(c.document for c in reply.citations))
    return AnswerNote(job.kb, job.text, "llm" if reply.generated else "extractive", documents)


def answer_reply(answer: Answer, *, ref: str = "") -> Reply:
    return Reply(
        answer.text,
        kind="answer",
        citations=answer.citations,
        feedback=answer.mode != "not_found",
        ref=ref,
        generated=answer.mode == "llm",
    )


class _Progress:
    """Turns the engine's progress callbacks (from a worker thread) into throttled message edits, one
    after the other (each replaces the message the one before showed)."""

    def __init__(self, messages: Messages, name: str, interval: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._messages = messages
        self._name = name
        self._interval = interval
        self._last = time.monotonic()
        self._pending: asyncio.Task[None] | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < self._interval or done >= total:
            return
        self._last = now
        self._loop.call_soon_threadsafe(self._schedule, IngestProgress(self._name, done, total))

    def _schedule(self, update: IngestProgress) -> None:
        self._pending = self._loop.create_task(self._after(self._pending, update))

    async def _after(self, previous: asyncio.Task[None] | None, update: IngestProgress) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await self._messages.update(update)

    async def flush(self) -> None:
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
