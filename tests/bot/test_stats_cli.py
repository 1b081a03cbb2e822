"""`threadwise stats`: the documents and passages per knowledge base, as the operator reads them."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from arq.constants import job_key_prefix
from redis.asyncio import Redis

from bot.cli import main
from bot.commands.stats import PROCESS_NOTE, run_stats
from bot.core.model import Job
from bot.infra.jobqueue import QueueRunner
from rag.embed import SentenceEmbedder
from tests.bot.doubles import Place
from tests.conftest import EngineFactory
from tests.redisdb import REDIS_URL, delete_prefix, unique_prefix


@pytest.fixture
def cli_env(clean_env: pytest.MonkeyPatch, tmp_path: Path, embedder: SentenceEmbedder) -> Path:
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(tmp_path / "data" / "chroma"))
    clean_env.setenv("LLM_PROVIDER", "extractive")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "vpn.md").write_text("# VPN\n\nOpen the Keychain app to rotate the VPN certificate.\n")
    (docs / "holidays.md").write_text("# Holidays\n\nThe office is closed on the first Monday of August.\n")
    long = "\n\n".join(
        f"## Part {i}\n\n" + f"Paragraph {i} of the handbook says something. " * 40 for i in range(6)
    )
    (docs / "handbook.md").write_text(f"# Handbook\n\n{long}\n")
    return docs


def _table(out: str) -> list[list[str]]:
    table, _, _ = out.partition("\n\n")
    return [line.rsplit(None, 2) for line in table.splitlines()]


def test_stats_prints_documents_and_passages_per_knowledge_base(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(cli_env / "vpn.md"), str(cli_env / "handbook.md")]) == 0
    assert main(["ingest", str(cli_env / "holidays.md"), "--kb", "slack-T1"]) == 0
    capsys.readouterr()

    assert main(["docs"]) == 0
    listed = capsys.readouterr().out
    assert main(["stats"]) == 0
    out = capsys.readouterr().out

    rows = _table(out)
    assert rows[0] == ["knowledge base", "documents", "passages"]
    local = rows[1]
    assert local[:2] == ["local", "2"]
    handbook_passages = int(local[2]) - 1  # vpn.md is one passage
    assert handbook_passages > 1 and f"handbook.md — {handbook_passages} passages" in listed
    assert rows[2] == ["slack-T1", "1", "1"]
    assert rows[3] == ["total", "3", str(int(local[2]) + 1)]
    assert out.rstrip().endswith(PROCESS_NOTE)  # and says where the per-process figures are


def test_stats_for_one_knowledge_base_and_for_one_that_does_not_exist(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(cli_env / "vpn.md"), "--kb", "slack-T1"]) == 0
    capsys.readouterr()

    assert main(["stats", "--kb", "slack-T1"]) == 0
    assert _table(capsys.readouterr().out)[1:] == [["slack-T1", "1", "1"]]
    assert main(["stats", "--kb", "teams-nobody"]) == 0
    assert _table(capsys.readouterr().out)[1:] == [["teams-nobody", "0", "0"]]
    assert main(["stats"]) == 0
    assert _table(capsys.readouterr().out)[1:] == [["slack-T1", "1", "1"]]  # one knowledge base: no total


async def test_with_the_queue_runner_stats_also_shows_the_shared_job_queue(
    make_engine: EngineFactory,
) -> None:
    prefix = unique_prefix()
    job_id = f"{prefix}Ev1"  # arq's job keys are not under the queue's name: this one must be unique too
    redis = Redis.from_url(REDIS_URL)
    try:
        queue = QueueRunner.sharing(redis, queue_name=f"{prefix}queue")
        question = Job(job_id, "ask", "slack", "slack-T1", "U1", "Where is the VPN guide?", "t", Place("C1"))
        await queue.submit(question)
        out = io.StringIO()

        assert await run_stats(make_engine(), kb=None, out=out, queue_depth=queue.depth) == 0
    finally:
        await redis.delete(f"{job_key_prefix}{job_id}")
        await redis.aclose()
        delete_prefix(prefix)

    assert "\njob queue: 0 running, 1 pending, 0 deferred\n" in out.getvalue()


def test_the_command_reads_the_queue_when_runner_is_queue(
    cli_env: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("RUNNER", "queue")
    clean_env.setenv("REDIS_URL", REDIS_URL)

    assert main(["stats"]) == 0
    assert re.search(r"^job queue: \d+ running, \d+ pending, \d+ deferred$", capsys.readouterr().out, re.M)
