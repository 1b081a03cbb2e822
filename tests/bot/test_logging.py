"""Log output: JSON lines for machines, readable lines for people, a rotating file when asked."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import structlog

from bot.logsetup import configure_logging


def test_json_format_writes_one_json_object_per_line(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)

    structlog.get_logger("threadwise.test").info("job_done", job_id="Ev1", seconds=0.5)
    logging.getLogger("some.library").warning("disk %s", "low")

    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 2
    ours, theirs = records
    assert ours["event"] == "job_done"
    assert ours["level"] == "info"
    assert ours["job_id"] == "Ev1" and ours["seconds"] == 0.5
    assert ours["timestamp"].startswith("20") and ours["timestamp"].endswith("Z")
    # Standard-library loggers (libraries) come out in the same format.
    assert theirs["event"] == "disk low"
    assert theirs["level"] == "warning"
    assert "timestamp" in theirs


def test_the_level_filters_out_quieter_records() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="WARNING", stream=stream)

    log = structlog.get_logger("threadwise.test")
    log.info("routine")
    log.warning("unusual")

    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["unusual"]


def test_exceptions_are_logged_with_their_traceback_in_json() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)

    try:
        raise ValueError("bad input")
    except ValueError:
        structlog.get_logger("threadwise.test").exception("job_failed")

    record = json.loads(stream.getvalue())
    assert record["event"] == "job_failed"
    assert "ValueError: bad input" in record["exception"]


def test_console_format_is_readable_text_not_json() -> None:
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream)

    structlog.get_logger("threadwise.test").info("job_done", job_id="Ev1")

    line = stream.getvalue().strip()
    assert "job_done" in line and "job_id=Ev1" in line
    assert not line.startswith("{")


def test_log_file_rotates_into_backups(tmp_path: Path) -> None:
    path = tmp_path / "threadwise.log"
    configure_logging(fmt="json", file=str(path), max_bytes=1024, backup_count=2, stream=io.StringIO())

    log = structlog.get_logger("threadwise.test")
    for n in range(60):
        log.info("ingested", document=f"doc-{n}.md", chunks=n)

    assert path.exists()
    assert (tmp_path / "threadwise.log.1").exists()
    assert not (tmp_path / "threadwise.log.3").exists()  # only backup_count backups are kept
    assert path.stat().st_size <= 1024
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["document"] == "doc-59.md"
