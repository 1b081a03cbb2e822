"""The dispatcher: the one path every platform's messages take from `Incoming` to a submitted job."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping

import structlog

from bot.core import text
from bot.core.commands import parse_command
from bot.core.model import Handle, Incoming, Job, JobKind, Reply, Working
from bot.core.ports import JobRunner, Outbound
from bot.core.state import Deduplicator, RateLimiter, ThreadMemory
from bot.core.telemetry import NullTelemetry, Telemetry

log = structlog.get_logger(__name__)


class Dispatcher:
    """Decides whether to answer, drops redeliveries, applies the rate limit, classifies the message
    and submits a job.

    A message is answered when it is addressed to the bot, or when it is a reply in a thread the bot
    has taken part in (`ThreadMemory.known`). Each user message is handled once, whichever event
    or delivery brings it: this is the one redelivery check. It shows the working state before
    submitting, so the user sees the bot react at once whichever process ends up running the job.
    """

    def __init__(
        self,
        *,
        runner: JobRunner,
        platforms: Mapping[str, Outbound],
        dedup: Deduplicator,
        limiter: RateLimiter,
        memory: ThreadMemory,
        kb_for: Callable[[str], str],
        admins: Collection[str],
        telemetry: Telemetry | None = None,
        channel_uploads: bool = True,
    ) -> None:
        self._runner = runner
        self._platforms = platforms
        self._dedup = dedup
        self._limiter = limiter
        self._memory = memory
        self._kb_for = kb_for
        self._admins = set(admins)
        self._telemetry = telemetry or NullTelemetry()
        self._channel_uploads = channel_uploads

    async def handle(self, msg: Incoming) -> Job | None:
        """Returns the job submitted, or None when the message was not for the bot, a duplicate or
        refused."""
        known = msg.in_thread and await self._memory.known(msg.thread)
        if not (msg.addressed or known):
            return None  # said among people, not to the bot
        bound = log.bind(platform=msg.platform, workspace=msg.workspace, user=msg.user, event_id=msg.event_id)
        kind = _kind(msg)
        if not await self._dedup.first_time(f"{msg.platform}:{msg.message_key or msg.event_id}"):
            bound.info("duplicate_dropped")
            self._telemetry.request(msg.platform, kind, "duplicate")
            return None
        sender = self._platforms[msg.platform].sender
        if msg.refusal:
            await sender.finish(msg.address, None, Reply(msg.refusal, kind="error", ephemeral=True))
            return None
        if kind == "ingest" and not (msg.is_direct or (msg.mentioned and self._channel_uploads)):
            self._telemetry.request(msg.platform, kind, "refused")
            refusal = text.FILES_ONLY_IN_DM if self._channel_uploads else text.CHANNEL_UPLOADS_OFF
            await sender.finish(msg.address, None, Reply(refusal, ephemeral=True))
            return None
        if not await self._within_limit(msg, kind, bound):
            return None
        handle: Handle | None = msg.handle  # a click: the message clicked
        if kind != "command":
            working = Working(kind, tuple(text.short(f.name) for f in msg.files), msg.text, not known)
            handle = await sender.begin(msg.address, working)
        job = Job(
            id=msg.event_id,
            kind=kind,
            platform=msg.platform,
            kb=self._kb_for(msg.workspace),
            user=msg.user,
            text=msg.text.strip(),
            thread=msg.thread,
            address=msg.address,
            files=msg.files,
            is_admin=msg.user in self._admins,
            handle=handle,
            place=msg.place,
            scope=msg.scope,
            choice=msg.choice,
        )
        await self._runner.submit(job)
        bound.info("job_submitted", kind=kind, job_id=job.id)
        return job

    async def _within_limit(self, msg: Incoming, kind: JobKind, bound: structlog.BoundLogger) -> bool:
        """Whether the sender may go ahead now; if not, they are told how long to wait."""
        # Commands have a bucket of their own: `docs` still works for someone who asked a lot, and
        # a flood of `forget` (each a store lookup) is held back like a flood of questions.
        bucket = f"command:{msg.workspace}:{msg.user}" if kind == "command" else f"{msg.workspace}:{msg.user}"
        wait = await self._limiter.acquire(bucket)
        if wait <= 0:
            return True
        bound.info("rate_limited", wait=round(wait, 1), kind=kind)
        self._telemetry.request(msg.platform, kind, "rate_limited")
        self._telemetry.rate_limited(msg.platform, self._kb_for(msg.workspace))
        refusal = text.COMMANDS_RATE_LIMITED if kind == "command" else text.RATE_LIMITED
        reply = Reply(refusal.format(seconds=math.ceil(wait)), kind="error", ephemeral=True)
        await self._platforms[msg.platform].sender.finish(msg.address, None, reply)
        return False


def _kind(msg: Incoming) -> JobKind:
    if msg.files:
        return "ingest"
    if msg.choice or parse_command(msg.text) is not None:
        return "command"
    return "ask"
