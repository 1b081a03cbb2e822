"""The `threadwise` command meets a full disk, a data folder it may not write, a Redis that does not
answer: one line on stderr saying what to do, a non-zero exit, no traceback, and nothing lost.

Each case runs the real command in a child process, the way an operator meets it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.chroma import ChromaStore, open_client
from tests.conftest import EngineFactory
from tests.processes import VENV_BIN, free_port, threadwise_env

KB = "local"
VPN = (
    b"# VPN guide\n\n## Certificates\n\nThe VPN client certificate expires every 90 days. Renew it from the "
    b"self-service portal under Security > Certificates.\n"
)


def _threadwise(
    args: list[str], env: dict[str, str], cwd: Path, *, prefix: list[str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    argv = [*(prefix or []), str(VENV_BIN / "threadwise"), *args]
    return subprocess.run(
        argv, env=threadwise_env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


@contextlib.contextmanager
def _small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only: skipped where it cannot be mounted)."""
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({mounted.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, *, leave: int) -> Path:
    """A file taking all of `disk` but `leave` bytes."""
    free = shutil.disk_usage(disk).free
    filler = disk / "filler"
    with filler.open("wb") as out:
        out.truncate(0)
        block = b"\0" * (1 << 16)
        remaining = free - leave
        while remaining > 0:
            remaining -= out.write(block[: min(len(block), remaining)])
    return filler


def _policy(sections: int) -> bytes:
    """A document of `sections` passages, none like the VPN guide."""
    return "".join(
        f"## Travel rule {n}\n\nA trip to office {n} is booked through the portal {n} days ahead, with "
        f"receipts {n} kept for audit; the per diem for city {n} follows table {n} of the handbook.\n\n"
        for n in range(sections)
    ).encode()


async def test_a_full_disk_during_ingest_is_one_line_and_the_knowledge_base_is_as_it_was(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    with _small_disk(tmp_path / "disk", "4m") as disk:
        store_dir = disk / "chroma"
        store = ChromaStore(
            open_client(persist_directory=str(store_dir), host=None, port=0), prefix="threadwise"
        )
        engine = make_engine(store=store)
        await engine.ingest(KB, "vpn.md", VPN, uploader="U1")
        before = ([(d.name, d.chunks) for d in await engine.documents(KB)], store.chunk_count(KB))
        engine.close()
        from rag.chroma import files as store_module

        store_module._held_locks.clear()  # this process's lock, released: the command takes it
        (tmp_path / "travel.md").write_bytes(_policy(40))
        filler = _fill(disk, leave=24 * 1024)
        env = {
            "CHROMA_PERSIST_DIRECTORY": str(store_dir),
            "BACKUP_DIR": str(tmp_path / "backups"),
            "LLM_PROVIDER": "extractive",
        }

        done = _threadwise(["ingest", str(tmp_path / "travel.md")], env, tmp_path)

        assert done.returncode != 0, done
        line = _one_line(done.stderr)
        assert line.startswith("threadwise: the disk is full"), line
        assert "free some space" in line.lower(), line
        filler.unlink()
        store = ChromaStore(
            open_client(persist_directory=str(store_dir), host=None, port=0), prefix="threadwise"
        )
        engine = make_engine(store=store)
        after = ([(d.name, d.chunks) for d in await engine.documents(KB)], store.chunk_count(KB))
        assert after == before
        answer = await engine.ask(KB, "How often does the VPN certificate expire?")
        assert "90 days" in answer.text and answer.citations[0].document == "vpn.md"
        engine.close()
        store_module._held_locks.clear()


def test_a_data_folder_the_user_may_not_write_is_one_line(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run the command without the right to override permissions")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)  # nobody's, 0755: not ours to write once DAC override is dropped
    (tmp_path / "vpn.md").write_bytes(VPN)
    caps = "-dac_override,-dac_read_search,-fowner"
    env = {"CHROMA_PERSIST_DIRECTORY": str(data / "chroma"), "LLM_PROVIDER": "extractive"}
    env["BACKUP_DIR"] = str(tmp_path / "backups")

    done = _threadwise(
        ["ingest", str(tmp_path / "vpn.md")],
        env,
        tmp_path,
        prefix=[setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"],
    )

    assert done.returncode != 0, done
    line = _one_line(done.stderr)
    assert line.startswith(f"threadwise: permission denied: {data / 'chroma'}"), line
    assert "CHROMA_PERSIST_DIRECTORY" in line, line
    assert not (data / "chroma").exists()


def test_a_worker_whose_redis_does_not_answer_says_so_in_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    env = {"RUNNER": "queue", "REDIS_URL": url, "CHROMA_PERSIST_DIRECTORY": str(tmp_path / "chroma")}
    env["BACKUP_DIR"] = str(tmp_path / "backups")

    done = _threadwise(["worker"], env, tmp_path)

    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    # arq logs each of its connection retries as a warning first; the command's own word is one line.
    [line] = [line for line in done.stderr.splitlines() if line.startswith("threadwise:")]
    assert line.startswith(f"threadwise: cannot reach Redis at REDIS_URL=redis://:***@127.0.0.1:{port}/0"), (
        line
    )
    assert "s3cret" not in done.stderr + done.stdout
