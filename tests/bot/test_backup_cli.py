"""`threadwise backup` / `threadwise restore`, and the backup schedule inside `threadwise serve`."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from bot.cli import main
from bot.cron import cron_trigger
from bot.infra.scheduler import attach_backups
from bot.settings import Settings, load_settings
from rag.chroma import ChromaStore, open_client
from rag.engine import Engine
from rag.errors import ConfigError
from rag.types import Answer
from tests.conftest import EngineFactory
from tests.processes import Processes, free_port

KB = "local"
QUESTION = "How often does the VPN certificate expire?"
VPN = (
    b"# VPN guide\n\n## Certificates\n\nThe VPN client certificate expires every 90 days. Renew it from the "
    b"self-service portal under Security > Certificates.\n\n## Errors\n\nERR_CONN_4021 means the TLS "
    b"certificate of the VPN gateway was rejected. Update the client to 5.2 or later.\n"
)
PETS = b"Office pets policy.\n\nDogs are welcome in the office on Fridays if they are house-trained.\n"


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(tmp_path / "data" / "chroma"))
    clean_env.setenv("BACKUP_DIR", str(tmp_path / "data" / "backups"))
    clean_env.setenv("LLM_PROVIDER", "extractive")
    return clean_env


async def cli(argv: list[str]) -> int:
    """`threadwise …` from a test's event loop (it runs its own)."""
    return await asyncio.to_thread(main, argv)


def _store_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "chroma"


def _backups(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "data" / "backups").glob("threadwise-backup-*.tar.gz"))


def _engine(make_engine: EngineFactory, tmp_path: Path) -> Engine:
    """An engine on the store the CLI uses (its default collection prefix)."""
    client = open_client(persist_directory=str(_store_dir(tmp_path)), host=None, port=0)
    return make_engine(store=ChromaStore(client, prefix="threadwise"))


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


async def _with_documents(engine: Engine) -> Answer:
    """The guide and the pets policy in KB; the answer to QUESTION they give (citing the guide)."""
    await engine.ingest(KB, "vpn.md", VPN, uploader="U1")
    await engine.ingest(KB, "pets.txt", PETS, uploader="U2")
    answer = await engine.ask(KB, QUESTION)
    assert "90 days" in answer.text and answer.citations[0].document == "vpn.md"
    return answer


async def _store_with_documents(make_engine: EngineFactory, tmp_path: Path) -> Answer:
    engine = _engine(make_engine, tmp_path)
    answer = await _with_documents(engine)
    engine.close()
    return answer


async def test_a_restore_answers_the_same_question_with_the_same_sources(
    env: pytest.MonkeyPatch, make_engine: EngineFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await _store_with_documents(make_engine, tmp_path)

    assert await cli(["backup"]) == 0
    [archive] = _backups(tmp_path)
    assert f"\nBacked up {_store_dir(tmp_path)} to {archive} (" in "\n" + capsys.readouterr().out

    # After the backup the guide changes and a document is deleted…
    engine = _engine(make_engine, tmp_path)
    await engine.ingest(KB, "vpn.md", VPN.replace(b"90 days", b"45 days"), uploader="U1")
    await engine.forget(KB, "pets.txt")
    assert "45 days" in (await engine.ask(KB, QUESTION)).text
    engine.close()

    # …and the restore brings back exactly what was there.
    assert await cli(["restore", str(archive), "--yes"]) == 0
    assert f"\nRestored {_store_dir(tmp_path)} from {archive} (taken " in "\n" + capsys.readouterr().out
    engine = _engine(make_engine, tmp_path)
    after = await engine.ask(KB, QUESTION)
    assert (after.text, after.citations) == (before.text, before.citations)
    assert [(d.name, d.uploader) for d in await engine.documents(KB)] == [
        ("pets.txt", "U2"),
        ("vpn.md", "U1"),
    ]
    engine.close()


def _corruptions(good: Path, folder: Path) -> dict[Path, str]:
    """Damaged copies of a good archive, each with the reason a restore should give."""
    data = good.read_bytes()
    cases = [
        (data[: len(data) // 2], "it is damaged or incomplete (Compressed file ended"),
        (b"this is not a backup\n", "it is damaged or incomplete (Not a gzipped file"),
        # The gzip trailer's CRC-32 (its last 8 bytes: CRC, then size): the data no longer matches it.
        (data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:], "it is damaged or incomplete (CRC check"),
        (
            _rewritten(good, lambda name, body: body + b"!" if name.endswith(".bin") else body),
            "does not match its checksum",
        ),
        (
            _rewritten(good, lambda name, body: None if name.endswith(".json") else body),
            "it has no threadwise-backup.json",
        ),
        (_with_member(good, "data/../../escaped.txt", b"gotcha"), "'data/../../escaped.txt', outside data/"),
    ]
    out = {}
    for n, (body, reason) in enumerate(cases):
        path = folder / f"bad-{n}.tar.gz"
        path.write_bytes(body)
        out[path] = reason
    return out


def _rewritten(good: Path, change: Callable[[str, bytes], bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(good, "r:gz") as src, tarfile.open(fileobj=buffer, mode="w:gz") as dst:
        for member in src:
            stream = src.extractfile(member)
            body = change(member.name, stream.read() if stream else b"")
            if body is not None:
                member.size = len(body)
                dst.addfile(member, io.BytesIO(body))
    return buffer.getvalue()


def _with_member(good: Path, name: str, body: bytes) -> bytes:
    buffer = io.BytesIO(gzip.decompress(good.read_bytes()))
    out = io.BytesIO()
    with tarfile.open(fileobj=buffer) as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        info = tarfile.TarInfo(name)
        info.size = len(body)
        dst.addfile(info, io.BytesIO(body))
        for member in src:
            stream = src.extractfile(member)
            dst.addfile(member, stream)
    return out.getvalue()


async def test_a_damaged_archive_is_refused_and_the_store_is_left_as_it_was(
    env: pytest.MonkeyPatch, make_engine: EngineFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _store_with_documents(make_engine, tmp_path)
    assert await cli(["backup"]) == 0
    [good] = _backups(tmp_path)
    engine = _engine(make_engine, tmp_path)  # the store moves on after the backup
    await engine.forget(KB, "pets.txt")
    engine.close()
    store = _store_dir(tmp_path)
    before = _files(store)
    capsys.readouterr()

    for bad, reason in _corruptions(good, tmp_path).items():
        assert await cli(["restore", str(bad), "--yes"]) == 1, reason
        err = capsys.readouterr().err
        assert f"threadwise: {bad} is not a usable threadwise backup: " in err, (reason, err)
        assert reason in err and err.rstrip().endswith("Nothing was changed."), (reason, err)
        assert _files(store) == before, reason
        assert sorted(p.name for p in store.parent.iterdir()) == ["backups", "chroma"], reason
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()

    # Without a terminal to ask in, a restore needs --yes; the good archive then restores.
    assert await cli(["restore", str(good)]) == 1
    assert "Add --yes to confirm" in capsys.readouterr().err
    assert _files(store) == before
    assert await cli(["restore", str(good), "--yes"]) == 0
    engine = _engine(make_engine, tmp_path)
    assert [d.name for d in await engine.documents(KB)] == ["pets.txt", "vpn.md"]
    engine.close()


def test_backup_and_restore_refuse_while_another_process_holds_the_store(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store_dir(tmp_path)
    ChromaStore(open_client(persist_directory=str(store), host=None, port=0), prefix="threadwise").close()
    assert main(["backup"]) == 0
    [archive] = _backups(tmp_path)
    inode = store.stat().st_ino
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from rag.chroma import open_client; "
            f"open_client(persist_directory={str(store)!r}, host=None, port=0); print('ready', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        capsys.readouterr()
        assert main(["restore", str(archive), "--yes"]) == 1
        err = capsys.readouterr().err
        assert f"is in use by process {holder.pid}: stop it" in err and "Nothing was changed." in err
        assert main(["backup"]) == 1
        err = capsys.readouterr().err
        assert f"in use by process {holder.pid}. If that is `threadwise serve`" in err
        assert f"kill -USR1 {holder.pid}" in err
    finally:
        holder.communicate(timeout=30)
    # The holder's Chroma writes to its files, so: the directory was not replaced, nothing was added.
    assert store.stat().st_ino == inode
    assert sorted(p.name for p in store.parent.iterdir()) == ["backups", "chroma"]
    assert len(_backups(tmp_path)) == 1


def test_a_backup_by_hand_deletes_archives_past_the_retention_period(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("BACKUP_RETENTION_DAYS", "7")
    ChromaStore(
        open_client(persist_directory=str(_store_dir(tmp_path)), host=None, port=0), prefix="threadwise"
    ).close()
    backups = tmp_path / "data" / "backups"
    backups.mkdir()
    now = datetime.now(UTC)
    old = backups / f"threadwise-backup-{(now - timedelta(days=8)):%Y%m%dT%H%M%SZ}.tar.gz"
    recent = backups / f"threadwise-backup-{(now - timedelta(days=6)):%Y%m%dT%H%M%SZ}.tar.gz"
    old.write_bytes(b"old")
    recent.write_bytes(b"recent")

    assert main(["backup"]) == 0
    out = capsys.readouterr().out
    assert f"Removed 1 older than 7 days: {old.name}." in out
    assert not old.exists() and recent.exists()
    assert len(_backups(tmp_path)) == 2  # the recent one and the new one


def _server_engine(make_engine: EngineFactory, port: int) -> Engine:
    """An engine on the Chroma server, as a worker's (the CLI's collection prefix)."""
    client = open_client(persist_directory="unused", host="127.0.0.1", port=port)
    return make_engine(store=ChromaStore(client, prefix="threadwise"))


async def test_with_a_chroma_server_a_restore_answers_the_same_question_with_the_same_sources(
    env: pytest.MonkeyPatch, make_engine: EngineFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Processes(tmp_path / "processes") as procs:
        _, port = await procs.chroma()
        env.setenv("CHROMA_HOST", "127.0.0.1")
        env.setenv("CHROMA_PORT", str(port))
        engine = _server_engine(make_engine, port)
        before = await _with_documents(engine)
        passages = (await engine.stats(KB)).chunks

        assert await cli(["backup"]) == 0  # serves and workers may go on meanwhile: nothing is held
        [archive] = _backups(tmp_path)
        server = f"the Chroma server at 127.0.0.1:{port}"
        expected = f"\nBacked up {server} to {archive} (1 knowledge base, 2 documents, {passages} passages, "
        assert expected in "\n" + capsys.readouterr().out

        # After the backup the guide changes, a document is deleted, another workspace starts…
        await engine.ingest(KB, "vpn.md", VPN.replace(b"90 days", b"45 days"), uploader="U1")
        await engine.forget(KB, "pets.txt")
        await engine.ingest("teams-later", "pets.txt", PETS, uploader="U3")
        assert "45 days" in (await engine.ask(KB, QUESTION)).text

        # …and the restore brings back exactly what was there, to the engine that ran all along.
        assert await cli(["restore", str(archive)]) == 1  # no terminal to ask in: only --yes confirms
        assert "Replace every knowledge base in " + server in capsys.readouterr().err
        assert await cli(["restore", str(archive), "--yes"]) == 0
        assert f"\nRestored {server} from {archive} (taken " in "\n" + capsys.readouterr().out
        after = await engine.ask(KB, QUESTION)
        assert (after.text, after.citations) == (before.text, before.citations)
        assert [(d.name, d.uploader) for d in await engine.documents(KB)] == [
            ("pets.txt", "U2"),
            ("vpn.md", "U1"),
        ]
        assert await engine.documents("teams-later") == []

    # The same archive restores into a single machine's embedded store.
    env.delenv("CHROMA_HOST")
    assert await cli(["restore", str(archive), "--yes"]) == 0
    assert f"Restored {_store_dir(tmp_path)} from {archive} (taken " in capsys.readouterr().out
    engine = _engine(make_engine, tmp_path)
    after = await engine.ask(KB, QUESTION)
    assert (after.text, after.citations) == (before.text, before.citations)
    engine.close()


async def test_a_single_machines_backup_restores_into_a_chroma_server(
    env: pytest.MonkeyPatch, make_engine: EngineFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await _store_with_documents(make_engine, tmp_path)
    assert await cli(["backup"]) == 0
    [archive] = _backups(tmp_path)

    with Processes(tmp_path / "processes") as procs:
        _, port = await procs.chroma()
        env.setenv("CHROMA_HOST", "127.0.0.1")
        env.setenv("CHROMA_PORT", str(port))
        assert await cli(["restore", str(archive), "--yes"]) == 0
        assert "embedded; 1 knowledge base, 2 documents, " in capsys.readouterr().out
        engine = _server_engine(make_engine, port)
        after = await engine.ask(KB, QUESTION)
        assert (after.text, after.citations) == (before.text, before.citations)
        assert [d.uploader for d in await engine.documents(KB)] == ["U2", "U1"]


def test_with_a_chroma_server_that_does_not_answer_backup_says_what_to_fix(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    env.setenv("CHROMA_HOST", "127.0.0.1")
    env.setenv("CHROMA_PORT", str(port))
    assert main(["backup"]) == 2
    assert f"the Chroma server at 127.0.0.1:{port} does not answer" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_a_bad_backup_schedule_stops_start_up_naming_it(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"^BACKUP_SCHEDULE='0 2 \* \*' is not valid: 4 field"):
        load_settings(backup_schedule="0 2 * *")
    env.setenv("BACKUP_SCHEDULE", "61 2 * * *")
    assert main(["backup"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("threadwise: BACKUP_SCHEDULE='61 2 * * *' is not valid: ")
    assert "61" in err and "59" in err


def test_cron_weekdays_count_from_sunday_as_in_cron() -> None:
    wednesday = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    def next_run(line: str) -> str:
        return f"{cron_trigger(line, timezone='UTC').get_next_fire_time(None, wednesday):%a %H:%M}"

    assert next_run("0 2 * * 0") == "Sun 02:00"
    assert next_run("0 2 * * 7") == "Sun 02:00"
    assert next_run("30 3 * * 1-5") == "Thu 03:30"
    assert next_run("0 2 * * 6") == "Sat 02:00"
    assert next_run("0 2 * * *") == "Thu 02:00"


async def test_serve_runs_the_schedule_and_takes_a_backup_on_sigusr1(
    env: pytest.MonkeyPatch, make_engine: EngineFactory, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,
        chroma_persist_directory=str(_store_dir(tmp_path)),
        backup_dir=str(tmp_path / "data" / "backups"),
        backup_schedule="30 3 * * *",
    )
    engine = _engine(make_engine, tmp_path)
    await engine.ingest(KB, "vpn.md", VPN)
    app = web.Application()
    scheduler = attach_backups(app, settings=settings, engine=engine)
    assert scheduler is not None
    runner = web.AppRunner(app)
    await runner.setup()  # on_startup: the scheduler starts
    try:
        assert scheduler.next_run is not None
        assert (scheduler.next_run.hour, scheduler.next_run.minute) == (3, 30)
        assert scheduler.next_run - datetime.now(scheduler.next_run.tzinfo) <= timedelta(days=1)
        assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL  # else the signal would kill us
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(200):
            if scheduler.last is not None:
                break
            await asyncio.sleep(0.05)
        assert scheduler.last is not None and _backups(tmp_path) == [scheduler.last.backup.path]
    finally:
        await runner.cleanup()  # on_cleanup: stopped, signal handler removed
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert scheduler.next_run is None
    engine.close()

    assert (
        attach_backups(
            web.Application(), settings=settings.model_copy(update={"chroma_host": "c"}), engine=engine
        )
        is None
    )


def _archive_of(folder: Path, out: Path, prepare: Callable[[Path], None]) -> Path:
    """A well-formed archive (manifest, checksums) of whatever `prepare` puts in `folder`."""
    from rag.backup import write_archive

    folder.mkdir(parents=True)
    prepare(folder)
    return write_archive(folder, out).path


def _some_other_database(folder: Path) -> None:
    import sqlite3

    with sqlite3.connect(folder / "chroma.sqlite3") as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (12.5)")


def _another_apps_chroma(folder: Path) -> None:
    import chromadb

    client = chromadb.PersistentClient(
        path=str(folder), settings=chromadb.Settings(anonymized_telemetry=False)
    )
    client.create_collection("notes").add(ids=["n1"], documents=["lunch at noon"], embeddings=[[0.1, 0.2]])
    client.close()


def _with_taken_at(good: Path, value: object) -> bytes:
    import json

    def change(name: str, body: bytes) -> bytes:
        if not name.endswith("threadwise-backup.json"):
            return body
        manifest = json.loads(body)
        manifest["taken_at"] = value
        return json.dumps(manifest).encode()

    return _rewritten(good, change)


async def test_restore_refuses_an_archive_that_is_not_a_threadwise_store(
    env: pytest.MonkeyPatch, make_engine: EngineFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _store_with_documents(make_engine, tmp_path)
    assert await cli(["backup"]) == 0
    [good] = _backups(tmp_path)
    store = _store_dir(tmp_path)
    before = _files(store)
    made = tmp_path / "made"
    bad_time = tmp_path / "bad-time.tar.gz"
    bad_time.write_bytes(_with_taken_at(good, "yesterday"))
    no_time = tmp_path / "no-time.tar.gz"
    no_time.write_bytes(_with_taken_at(good, None))
    cases = {
        _archive_of(tmp_path / "db", made, _some_other_database): "it is not a Chroma store",
        _archive_of(tmp_path / "other", made, _another_apps_chroma): (
            "it holds no knowledge base of threadwise (CHROMA_COLLECTION_NAME=threadwise), only: notes"
        ),
        bad_time: "its threadwise-backup.json has no valid taken_at ('yesterday')",
        no_time: "its threadwise-backup.json has no valid taken_at (None)",
    }
    capsys.readouterr()
    for bad, reason in cases.items():
        assert await cli(["restore", str(bad), "--yes"]) == 1, reason
        err = capsys.readouterr().err
        assert err.startswith(f"threadwise: {bad} is not a usable threadwise backup: {reason}"), err
        assert err.rstrip().endswith("Nothing was changed.") and "Traceback" not in err, err
        assert _files(store) == before, reason
        assert sorted(p.name for p in store.parent.iterdir()) == ["backups", "chroma"], reason
    engine = _engine(make_engine, tmp_path)
    assert [d.name for d in await engine.documents(KB)] == ["pets.txt", "vpn.md"]
    engine.close()


def test_a_backup_dir_inside_the_store_stops_start_up(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store_dir(tmp_path)
    ChromaStore(open_client(persist_directory=str(store), host=None, port=0), prefix="threadwise").close()
    inside = store / "backups"
    env.setenv("BACKUP_DIR", str(inside))
    for command in (["backup"], ["docs"], ["restore", str(tmp_path / "x.tar.gz"), "--yes"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"threadwise: BACKUP_DIR={str(inside)!r} is not valid: it is inside "), err
        assert f"CHROMA_PERSIST_DIRECTORY ({store})" in err and err[-1] == "\n" and err.count("\n") == 1
    assert not inside.exists()
    # The same folder name next to the store, or one that merely starts like it, is fine.
    env.setenv("BACKUP_DIR", str(store) + "-backups")
    assert main(["backup"]) == 0
    assert list((tmp_path / "data" / "chroma-backups").glob("threadwise-backup-*.tar.gz"))
