"""Running jobs in this process: tracked asyncio tasks, so shutdown can wait for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from bot.core.model import Job

log = structlog.get_logger(__name__)

# A question spends most of its time waiting for the LLM (seconds), so many may wait at once: a low
# limit would queue questions behind other people's LLM calls. An ingest keeps the CPU busy
# (parsing, embedding) and holds a document in memory, so few run at once; they never take a
# question's slot.
ASK_CONCURRENCY = 64
INGEST_CONCURRENCY = 2


class InProcessRunner:
    """Runs each job as a task of this event loop. `concurrency` bounds how many questions and
    commands run at once, `ingest_concurrency` how many ingests, each apart from the other.

    CPU-heavy steps inside a job already run in threads, so the loop stays free to ack events.
    """

    def __init__(
        self,
        run: Callable[[Job], Awaitable[object]],
        *,
        concurrency: int = ASK_CONCURRENCY,
        ingest_concurrency: int = INGEST_CONCURRENCY,
    ) -> None:
        self._run = run
        self._slots = asyncio.Semaphore(concurrency)
        self._ingest_slots = asyncio.Semaphore(ingest_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0  # tasks holding a slot; the others wait for one
        self._waiting: dict[asyncio.Task[None], float] = {}  # tasks waiting for a slot → since when

    async def submit(self, job: Job) -> None:
        task = asyncio.create_task(self._guarded(job), name=f"job-{job.id}")
        self._tasks.add(task)
        self._waiting[task] = time.monotonic()
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._waiting.pop(task, None)

    async def _guarded(self, job: Job) -> None:
        async with self._ingest_slots if job.kind == "ingest" else self._slots:
            self._waiting.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._active += 1
            try:
                await self._run(job)
            except Exception:
                # JobHandler replies to the user itself; this only catches a failure to reply.
                log.exception("job_crashed", job_id=job.id)
            finally:
                self._active -= 1

    async def depth(self) -> dict[str, int]:
        """Jobs running now and jobs waiting for a slot (the /metrics queue depth)."""
        return {"running": self._active, "pending": len(self._tasks) - self._active}

    async def oldest_waiting_seconds(self) -> float:
        """How long the job waiting longest for a slot has waited; 0 when none waits."""
        return time.monotonic() - min(self._waiting.values()) if self._waiting else 0.0

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
