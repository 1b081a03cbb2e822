"""Slow and half-open clients against a real `threadwise serve` with few file descriptors (prlimit):
request heads have a deadline, a flood of half-sent requests does not starve /health and /ready,
running out of descriptors is logged once rather than on every accept, and bodies stay capped.

Every flood here is bounded (a few hundred connections to 127.0.0.1) and ends with its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.processes import VENV_BIN, Process, Processes, free_port, http_status, threadwise_env, until

NOFILE = 256  # the serve's descriptor limit: ~20 in use when idle
HEADER_TIMEOUT = 2.0
HALF_A_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag"
WHOLE_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[tuple[Process, str]]:
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is needed to give the serve few file descriptors")
    with Processes(tmp_path) as procs:
        port = free_port()
        env = threadwise_env(
            {
                "PORT": str(port),
                "HOST": "127.0.0.1",
                "LOG_FORMAT": "json",
                "LLM_PROVIDER": "extractive",
                "CHROMA_PERSIST_DIRECTORY": str(tmp_path / "chroma"),
                "BACKUP_DIR": str(tmp_path / "backups"),
                "HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            }
        )
        argv = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", str(VENV_BIN / "threadwise"), "serve"]
        proc = procs.start("serve", argv, env=env)
        base = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            return await http_status(f"{base}/ready") == 200

        await until(up, 120, proc)
        yield proc, base


async def _open(port: int, first_bytes: bytes, *, read_reply: bool = False) -> Conn | None:
    """A connection that sent `first_bytes` (and read the reply, if asked); None if none was made."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 3)
        writer.write(first_bytes)
        await writer.drain()
        if read_reply:
            await asyncio.wait_for(reader.readuntil(b'{"status": "ok"}'), 3)
        return reader, writer
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None


async def _closed_by_server(conn: Conn, within: float) -> bool:
    reader, _ = conn
    try:
        return await asyncio.wait_for(reader.read(1024), within) == b""
    except TimeoutError:
        return False
    except OSError:  # reset: closed as well
        return True


async def _timed_status(url: str) -> tuple[int | None, float]:
    started = time.perf_counter()
    status = await http_status(url, timeout=3)
    return status, time.perf_counter() - started


def _descriptor_log_lines(proc: Process) -> list[str]:
    return [
        line
        for line in proc.output().splitlines()
        if "out of system resource" in line or "out_of_file_descriptors" in line or "Too many open" in line
    ]


async def test_half_sent_requests_are_dropped_and_do_not_starve_the_probes(
    serve: tuple[Process, str],
) -> None:
    proc, base = serve
    port = int(base.rsplit(":", 1)[1])
    flood = [c for c in await asyncio.gather(*(_open(port, HALF_A_REQUEST) for _ in range(2 * NOFILE))) if c]
    try:
        assert len(flood) > NOFILE // 2  # the flood got in
        await asyncio.sleep(0.3)

        # Every descriptor the serve has could be held by the flood: the probes still answer at once.
        for path in ("/health", "/ready"):
            status, seconds = await _timed_status(f"{base}{path}")
            assert status == 200 and seconds < 1.0, (path, status, seconds)

        # A half-sent request is closed once its head is later than the header timeout; a complete
        # one on a connection opened as long ago is answered.
        late = await _open(port, HALF_A_REQUEST)
        assert late is not None
        assert not await _closed_by_server(late, HEADER_TIMEOUT / 4)
        assert await _closed_by_server(late, HEADER_TIMEOUT + 2.0)
        closed = await asyncio.gather(*(_closed_by_server(c, 3.0) for c in flood))
        assert all(closed), f"{closed.count(False)} of {len(closed)} half-open connections still open"
        assert proc.alive()
        # Waiting heads are capped, but one burst of accepts may still touch the limit (one line).
        assert len(_descriptor_log_lines(proc)) <= 1
    finally:
        for _, writer in flood:
            writer.close()


async def test_running_out_of_descriptors_is_logged_once_and_the_probes_recover(
    serve: tuple[Process, str],
) -> None:
    proc, base = serve
    port = int(base.rsplit(":", 1)[1])
    # Idle keep-alive connections, each after a whole request: more than the serve has descriptors.
    opened = await asyncio.gather(*(_open(port, WHOLE_REQUEST, read_reply=True) for _ in range(NOFILE)))
    extra = [asyncio.create_task(_open(port, WHOLE_REQUEST, read_reply=True)) for _ in range(NOFILE // 2)]
    try:
        await asyncio.sleep(4.0)  # asyncio retries accept() every second meanwhile
        status, seconds = await _timed_status(f"{base}/health")
        assert status == 200 and seconds < 2.5, (status, seconds)  # room was made: answered

        lines = _descriptor_log_lines(proc)
        assert len(lines) == 1, "\n".join(line[:300] for line in lines)
        assert '"event": "out_of_file_descriptors"' in lines[0] and "Traceback" not in proc.output()
        assert proc.alive()
    finally:
        for task in extra:
            task.cancel()
        for conn in [*opened, *[t.result() for t in extra if t.done() and not t.cancelled()]]:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn[1].close()


async def test_an_oversized_body_gets_413(serve: tuple[Process, str]) -> None:
    _, base = serve
    import aiohttp

    body = b'{"type": "message", "text": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base}/api/messages", data=body, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        assert response.status == 413  # Teams without MICROSOFT_APP_ID (development) reads the body
