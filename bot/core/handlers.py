"""Running a job: fetch files, call the engine, reply in the thread. The same code in any process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import structlog

from bot.core import text
from bot.core.commands import name_candidates, parse_command
from bot.core.model import Job, Reply, ReplyKind
from bot.core.ports import Outbound, ReplySender
from bot.core.state import ThreadMemory
from bot.core.telemetry import NullTelemetry, Outcome, Telemetry, timed
from rag.engine import Engine, NoSuchDocument, NotYourDocument
from rag.errors import RetryableError, UserFacingError
from rag.names import normalize_name
from rag.types import Answer, IngestResult, Turn

log = structlog.get_logger(__name__)

STREAM_INTERVAL_S = 1.0  # edit the working message at most about once a second


class JobHandler:
    def __init__(
        self,
        *,
        engine: Engine,
        platforms: Mapping[str, Outbound],
        memory: ThreadMemory,
        max_file_mb: float,
        stream_interval: float = STREAM_INTERVAL_S,
        retry_elsewhere: bool = False,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._engine = engine
        self._platforms = platforms
        self._memory = memory
        self._max_file_mb = max_file_mb
        self._interval = stream_interval
        # Only a queue worker can retry a job later; in-process a RetryableError gets the apology.
        self._retry_elsewhere = retry_elsewhere
        self._telemetry = telemetry or NullTelemetry()

    async def run(self, job: Job) -> None:
        """Do the job and always reply: with the result, a user-facing reason, or an apology."""
        sender = self._platforms[job.platform].sender
        bound = log.bind(job_id=job.id, platform=job.platform, kb=job.kb, user=job.user, kind=job.kind)
        started = time.perf_counter()
        outcome: Outcome = "answered"
        try:
            reply = await self._dispatch(job, sender)
            if reply.kind == "error":
                outcome = "refused"
        except UserFacingError as exc:
            reply, outcome = Reply(exc.message, kind="error"), "refused"
            bound.info("job_refused", reason=exc.message)
        except Exception as exc:
            if isinstance(exc, RetryableError) and self._retry_elsewhere:
                raise  # the queue runner retries with backoff
            bound.exception("job_failed")
            apology = text.INTERNAL_ERROR.format(doing=text.DOING[job.kind], ref=job.id[:12])
            reply, outcome = Reply(apology, kind="error"), "error"
        try:
            with timed(self._telemetry, "reply"):
                await sender.finish(job.address, job.handle, reply)
        except Exception as exc:
            if isinstance(exc, RetryableError) and self._retry_elsewhere:
                raise  # counted on the retry
            self._count(job, "error", started)
            # The reply could not be shown (a platform refusing it, a rendering failure): the user
            # gets the apology instead of a working message that never ends. A platform out of
            # reach is left to the runner (a queue worker retries the whole job).
            if outcome == "error" or isinstance(exc, OSError) or not await self._apologise(sender, job):
                raise
            bound.exception("reply_failed_apology_sent")
            return
        self._count(job, outcome, started)
        bound.info("job_done", seconds=round(time.perf_counter() - started, 3), outcome=reply.kind)

    async def _apologise(self, sender: ReplySender, job: Job) -> bool:
        apology = text.INTERNAL_ERROR.format(doing=text.DOING[job.kind], ref=job.id[:12])
        try:
            await sender.finish(job.address, job.handle, Reply(apology, kind="error"))
        except Exception:
            return False
        return True

    def _count(self, job: Job, outcome: Outcome, started: float) -> None:
        self._telemetry.request(job.platform, job.kind, outcome)
        self._telemetry.job(job.kind, time.perf_counter() - started)

    async def _dispatch(self, job: Job, sender: ReplySender) -> Reply:
        if job.kind == "ingest":
            return await self._ingest(job, sender)
        if job.kind == "command":
            return await self._command(job)
        return await self._ask(job, sender)

    async def _ask(self, job: Job, sender: ReplySender) -> Reply:
        if not job.text.strip():
            return Reply(text.EMPTY_QUESTION)
        history = await self._memory.history(job.thread)
        last = [0.0]

        async def on_delta(partial: str) -> None:
            now = time.monotonic()
            if now - last[0] >= self._interval:
                last[0] = now
                await sender.update(job.address, job.handle, partial + " ▌")

        answer = await self._engine.ask(job.kb, job.text, history=history, on_delta=on_delta)
        await self._memory.append(job.thread, Turn("user", job.text), Turn("assistant", answer.text))
        return answer_reply(answer)

    async def _ingest(self, job: Job, sender: ReplySender) -> Reply:
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
                progress = _Progress(sender, job, name, self._interval)
                result = await self._engine.ingest(
                    job.kb,
                    name,
                    data,
                    uploader=job.user,
                    url=file.permalink,
                    trusted=job.is_admin,
                    progress=progress,
                )
                await progress.flush()
                results.append(result)
            except NotYourDocument as exc:
                errors.append(text.REPLACE_DENIED.format(name=text.short(exc.name), uploader=_who(exc.owner)))
            except UserFacingError as exc:
                errors.append(exc.message)
            except RetryableError:
                raise
            except Exception:
                log.exception("ingest_failed", job_id=job.id, document=text.short(file.name))
                errors.append(text.FILE_FAILED.format(name=text.short(file.name), ref=job.id[:12]))
        kind: ReplyKind = "error" if errors and not results else "info"
        return Reply(text.ingest_summary(results, errors), kind=kind)

    async def _command(self, job: Job) -> Reply:
        command = parse_command(job.text)
        name = command.name if command else "help"
        if name == "docs":
            return Reply(text.documents_list(await self._engine.documents(job.kb)), ephemeral=True)
        if name == "stats":
            return Reply(text.stats_text(await self._engine.stats(job.kb)), ephemeral=True)
        if name == "forget":
            return await self._forget(job, command.argument if command else "")
        return Reply(text.help_text(job.platform, self._max_file_mb), ephemeral=True)

    async def _forget(self, job: Job, argument: str) -> Reply:
        if not argument:
            return Reply(text.FORGET_USAGE, kind="error", ephemeral=True)
        for candidate in name_candidates(argument):
            found = await self._engine.document(job.kb, candidate)
            if found is not None:
                break
        else:
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


def _who(uploader: str) -> str:
    return uploader or "unknown"


def answer_reply(answer: Answer) -> Reply:
    return Reply(answer.text, kind="answer", citations=answer.citations, feedback=answer.mode != "not_found")


class _Progress:
    """Turns the engine's progress callbacks (from a worker thread) into throttled message edits."""

    def __init__(self, sender: ReplySender, job: Job, name: str, interval: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._sender = sender
        self._job = job
        self._name = name
        self._interval = interval
        self._last = time.monotonic()
        self._pending: asyncio.Task[None] | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < self._interval or done >= total:
            return
        self._last = now
        message = text.ingest_progress(self._name, done, total)
        self._loop.call_soon_threadsafe(self._schedule, message)

    def _schedule(self, message: str) -> None:
        update = self._sender.update(self._job.address, self._job.handle, message)
        self._pending = self._loop.create_task(update)

    async def flush(self) -> None:
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
