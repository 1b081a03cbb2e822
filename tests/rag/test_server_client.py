"""The Chroma server client (CHROMA_HOST): a server that is down stops start-up with what to fix; one
that stops answering makes calls fail after the timeout instead of hanging, and is used again once it
answers; a restarted server is reconnected to."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from rag.chroma import ChromaStore, open_client
from rag.errors import ConfigError
from tests.processes import Processes, free_port, until

pytestmark = pytest.mark.slow


def test_no_server_at_chroma_host_is_a_config_error_saying_what_to_do() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ConfigError) as err:
        open_client(persist_directory="unused", host="127.0.0.1", port=port)
    message = str(err.value)
    assert message.startswith(
        f"CHROMA_HOST='127.0.0.1' CHROMA_PORT={port}: the Chroma server at 127.0.0.1:{port} does not "
        "answer (ConnectError"
    )
    assert f"chroma run --path DIR --host 0.0.0.0 --port {port}" in message


async def test_a_server_that_stops_answering_times_out_and_is_used_again_when_it_answers(
    tmp_path: Path,
) -> None:
    with Processes(tmp_path) as procs:
        chroma, port = await procs.chroma()
        store = ChromaStore(
            open_client(persist_directory="unused", host="127.0.0.1", port=port, timeout=1.0), prefix="t"
        )
        store.ping()
        assert store.knowledge_bases() == []

        chroma.signal(signal.SIGSTOP)  # its connections stay open; nothing answers on them
        try:
            await until(lambda: _stopped(chroma.popen.pid), 5)  # kill() returns before the stop is done
            started = time.monotonic()
            with pytest.raises(httpx.TimeoutException):
                store.ping()
            assert time.monotonic() - started < 5
        finally:
            chroma.signal(signal.SIGCONT)
        store.ping()

        chroma.popen.kill()
        chroma.wait(10)
        with pytest.raises(httpx.ConnectError):
            store.ping()
        await procs.chroma(port=port)  # the same data, the same port
        store.ping()
        assert store.knowledge_bases() == []


def _stopped(pid: int) -> bool:
    """Every thread of the process is stopped (state T in /proc), not just signalled."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return all((t / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for t in tasks)
