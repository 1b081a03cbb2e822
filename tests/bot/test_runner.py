"""The in-process runner: questions are not queued behind ingests, nor behind each other's LLM wait."""

from __future__ import annotations

import asyncio

from bot.core.model import Job, JobKind
from bot.core.runner import InProcessRunner
from tests.bot.doubles import Place


def job(n: int, kind: JobKind) -> Job:
    return Job(
        id=f"Ev{n}",
        kind=kind,
        platform="slack",
        kb="slack-T1",
        user=f"U{n}",
        text="How do I rotate the VPN certificate?" if kind == "ask" else "",
        thread=f"C1:{n}",
        address=Place("C1"),
    )


class HeldJobs:
    """A job function whose jobs wait until released; it records which jobs started and ended."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def run(self, job: Job) -> None:
        self.started.append(job.id)
        await self.release.setdefault(job.id, asyncio.Event()).wait()
        self.ended.append(job.id)

    def let_go(self, job_id: str) -> None:
        self.release.setdefault(job_id, asyncio.Event()).set()


async def settle() -> None:
    for _ in range(10):  # let the submitted tasks run up to where they wait
        await asyncio.sleep(0)


async def test_a_question_runs_while_the_ingest_slots_are_taken() -> None:
    jobs = HeldJobs()
    runner = InProcessRunner(jobs.run, ingest_concurrency=1)
    await runner.submit(job(1, "ingest"))
    await runner.submit(job(2, "ingest"))
    await settle()
    assert jobs.started == ["Ev1"]  # the second ingest waits for the first

    await runner.submit(job(3, "ask"))
    jobs.let_go("Ev3")
    await settle()

    assert jobs.ended == ["Ev3"]  # answered while both ingests are still there
    assert await runner.depth() == {"running": 1, "pending": 1}
    jobs.let_go("Ev1")
    jobs.let_go("Ev2")
    await runner.drain()
    assert jobs.ended == ["Ev3", "Ev1", "Ev2"]


async def test_questions_wait_for_an_answer_side_by_side_up_to_the_limit() -> None:
    jobs = HeldJobs()
    runner = InProcessRunner(jobs.run)  # the default limit
    for n in range(64):
        await runner.submit(job(n, "ask"))
    await runner.submit(job(64, "ask"))
    await settle()

    assert len(jobs.started) == 64  # all waiting on their LLM call at the same time
    assert await runner.depth() == {"running": 64, "pending": 1}
    jobs.let_go("Ev0")
    await settle()
    assert "Ev64" in jobs.started  # the first slot freed goes to the waiting question
    for n in range(1, 65):
        jobs.let_go(f"Ev{n}")
    await runner.drain()
    assert sorted(jobs.ended) == sorted(f"Ev{n}" for n in range(65))
