"""The terminal: `threadwise chat` (run_chat) and the one-shot commands, as a person would use them."""

from __future__ import annotations

import getpass
import io
import os
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.cli import main
from bot.commands.chat import run_chat
from bot.console.files import LocalFileFetcher
from bot.console.sender import ConsoleAddress, ConsoleSender
from bot.core import text
from bot.core.model import FileRef, IngestProgress, PartialAnswer, Reply, Working
from bot.settings import Settings
from rag.chroma import open_client
from rag.embed import SentenceEmbedder
from rag.engine import Engine
from rag.errors import UserFacingError

VPN_GUIDE = (
    "# VPN guide\n\nTo rotate the VPN certificate, open the Keychain app and delete the old certificate. "
    "Then download the new certificate from the IT portal and double-click it.\n"
)


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        llm_provider="extractive",
        chroma_persist_directory=str(tmp_path / "chroma"),
        rate_limit_requests_per_minute=60,
        rate_limit_burst=10,
    )


async def chat(engine: Engine, tmp_path: Path, *lines: str, kb: str = "team") -> str:
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    out = io.StringIO()
    code = await run_chat(settings_for(tmp_path), engine, kb=kb, stdin=stdin, out=out)
    assert code == 0
    return out.getvalue()


@pytest.fixture
def vpn_file(tmp_path: Path) -> Path:
    path = tmp_path / "vpn-guide.md"
    path.write_text(VPN_GUIDE)
    return path


# -- threadwise chat ---------------------------------------------------------------------------


async def test_an_empty_local_knowledge_base_gets_the_user_guide(
    make_engine: Callable[..., Engine], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    engine = make_engine()

    out = await chat(engine, tmp_path, "/docs", "How do I add documents?", "/quit", kb="local")

    assert out.startswith("(The knowledge base was empty, so I loaded my own user guide.")
    listed, answer = out.split("you> ")[1:3]
    assert "• threadwise-guide.md —" in listed
    assert "by threadwise" in listed
    assert "] threadwise-guide.md — threadwise user guide > Adding documents" in answer
    assert out.endswith("bye\n")


async def test_a_local_knowledge_base_with_documents_is_left_alone(
    make_engine: Callable[..., Engine], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    await engine.ingest("local", "vpn-guide.md", VPN_GUIDE.encode())

    out = await chat(engine, tmp_path, "/docs", kb="local")

    assert "user guide" not in out
    assert "1 document in the knowledge base" in out
    assert [d.name for d in await engine.documents("local")] == ["vpn-guide.md"]


async def test_upload_ask_list_and_forget_in_one_session(
    make_engine: Callable[..., Engine], tmp_path: Path, vpn_file: Path, clean_env: pytest.MonkeyPatch
) -> None:
    engine = make_engine()

    out = await chat(
        engine,
        tmp_path,
        f"/upload {vpn_file}",
        "How do I rotate the VPN certificate?",
        "/docs",
        "/forget vpn-guide.md",
        "/docs",
        "/quit",
        "never read: the session ended",
    )

    upload, answer, listed, forgot, empty = out.split("you> ")[1:6]
    assert "Reading vpn-guide.md…" in upload
    assert "✅ Added vpn-guide.md:" in upload
    assert "Searching your documents…" in answer
    assert "open the Keychain app" in answer
    assert "Sources\n[1] vpn-guide.md — VPN guide" in answer
    assert "*" not in answer  # Markdown emphasis is stripped for the terminal
    assert f"• vpn-guide.md — 1 passage, by {getpass.getuser()}" in listed
    assert forgot.startswith("Deleted vpn-guide.md (1 passage).")
    assert text.NO_DOCUMENTS in empty
    assert out.endswith("you> bye\n")
    assert "never read" not in out
    assert await engine.documents("team") == []


async def test_uploading_a_missing_file_says_so(
    make_engine: Callable[..., Engine], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    missing = tmp_path / "nowhere" / "notes.md"

    out = await chat(engine, tmp_path, f"/upload {missing}")

    assert f"⚠️ {missing}: no such file." in out
    assert await engine.documents("team") == []


async def test_end_of_input_ends_the_session(
    make_engine: Callable[..., Engine], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    out = await chat(make_engine(), tmp_path, "", "   ")

    assert out.endswith("you> you> you> bye\n")


async def test_a_streamed_answer_is_completed_not_repeated() -> None:
    out = io.StringIO()
    sender = ConsoleSender(out)
    where = ConsoleAddress("s1")
    handle = await sender.begin(where, Working("ask"))

    handle = await sender.update(where, handle, PartialAnswer("Open the"))
    handle = await sender.update(where, handle, IngestProgress("vpn.md", 3, 10))  # not shown
    handle = await sender.update(where, handle, PartialAnswer("Open the Keychain"))
    await sender.finish(where, handle, Reply("Open the Keychain app [1].", kind="answer"))

    assert out.getvalue() == "Searching your documents…\nOpen the Keychain app [1].\n\n"


async def test_a_final_answer_unlike_the_streamed_text_is_printed_whole() -> None:
    # Groq's answer is cleaned of bad citations after streaming, or replaced by the fallback answer.
    out = io.StringIO()
    sender = ConsoleSender(out)
    where = ConsoleAddress("s1")
    handle = await sender.begin(where, Working("ask"))

    handle = await sender.update(where, handle, PartialAnswer("The portal [7]"))
    await sender.finish(where, handle, Reply("Here are the most relevant passages: [1] …", kind="answer"))

    assert out.getvalue().endswith("The portal [7]\nHere are the most relevant passages: [1] …\n\n")


# -- threadwise ingest / docs / ask / forget ------------------------------------------------------


@pytest.fixture
def cli_env(clean_env: pytest.MonkeyPatch, tmp_path: Path, embedder: SentenceEmbedder) -> Path:
    """The environment of a fresh install using an embedded store under tmp_path (model already loaded)."""
    store = tmp_path / "cli-data" / "chroma"
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(store))
    clean_env.setenv("LLM_PROVIDER", "extractive")
    return store


def test_ingest_docs_ask_forget_from_the_command_line(
    cli_env: Path, vpn_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(vpn_file), "--uploader", "dana"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("local: 1 documents ingested (0 unchanged, 0 failed), 1 chunks, ")
    assert " s" in summary and "chunks/s" in summary

    assert main(["docs"]) == 0
    assert "• vpn-guide.md — 1 passage, by dana" in capsys.readouterr().out

    assert main(["ask", "How do I rotate the VPN certificate?"]) == 0
    answer = capsys.readouterr().out
    assert "open the Keychain app" in answer
    assert "Sources\n[1] vpn-guide.md — VPN guide" in answer

    assert main(["ingest", str(vpn_file)]) == 0
    assert "local: 0 documents ingested (1 unchanged, 0 failed), 0 chunks" in capsys.readouterr().out

    assert main(["forget", "vpn-guide.md"]) == 0
    assert capsys.readouterr().out.strip() == "Deleted vpn-guide.md (1 passage) from local."

    assert main(["docs"]) == 0
    assert text.NO_DOCUMENTS in capsys.readouterr().out


def test_the_operators_ingest_replaces_anyones_document_and_keeps_its_uploader(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "v1", tmp_path / "v2"
    for folder, words in ((first, "the Keychain app"), (second, "the Certificates portal")):
        folder.mkdir()
        (folder / "vpn-guide.md").write_text(f"# VPN guide\n\nTo rotate the certificate, open {words}.\n")
    assert main(["ingest", str(first / "vpn-guide.md"), "--uploader", "U_DANA"]) == 0

    assert main(["ingest", str(second / "vpn-guide.md")]) == 0  # as the operator, no --uploader
    assert main(["docs"]) == 0
    kept = capsys.readouterr().out
    assert main(["ingest", str(first / "vpn-guide.md"), "--uploader", "U_SAM"]) == 0
    assert main(["docs"]) == 0
    claimed = capsys.readouterr().out

    assert "local: 1 documents ingested (0 unchanged, 0 failed)" in kept
    assert "• vpn-guide.md — 1 passage, by U_DANA" in kept  # still Dana's: she may delete it
    assert "• vpn-guide.md — 1 passage, by U_SAM" in claimed  # --uploader says whose it is now


def test_a_name_is_the_same_document_from_any_terminal_and_forgettable_as_listed(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mac, linux = tmp_path / "mac", tmp_path / "linux"
    for folder in (mac, linux):
        folder.mkdir()
    (mac / unicodedata.normalize("NFD", "café.md")).write_text("# Café\n\nThe café opens at 8.\n")
    (linux / unicodedata.normalize("NFC", "café.md")).write_text("# Café\n\nThe café opens at 9.\n")
    (linux / "_draft_.md").write_text("# Draft\n\nNot final.\n")

    assert main(["ingest", str(mac), str(linux)]) == 0
    assert main(["docs"]) == 0
    listed = capsys.readouterr().out
    assert "2 documents in the knowledge base" in listed
    assert "• café.md — 1 passage" in listed and "• _draft_.md — 1 passage" in listed

    assert main(["forget", "_draft_.md"]) == 0
    assert main(["forget", unicodedata.normalize("NFD", "café.md")]) == 0
    assert main(["docs"]) == 0
    assert text.NO_DOCUMENTS in capsys.readouterr().out


def test_ingest_of_a_folder_reports_each_refused_file_and_keeps_the_rest(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "handbook"
    (folder / "it").mkdir(parents=True)
    (folder / "it" / "vpn-guide.md").write_text(VPN_GUIDE)
    (folder / "parking.txt").write_text("Visitors park on level -2 of the garage.\n")
    (folder / "scan.pdf").write_bytes(b"%PDF-1.7\ngarbage without xref")
    (folder / "notes.bin").write_bytes(b"\0\1")  # not a supported extension: not even tried

    assert main(["ingest", str(folder)]) == 1  # one file failed
    out, err = capsys.readouterr()
    assert "skipped: scan.pdf" in err
    assert out.strip().splitlines()[-1].startswith("local: 2 documents ingested (0 unchanged, 1 failed), ")
    assert main(["docs"]) == 0
    listed = capsys.readouterr().out
    # A name has no path separator: the folder becomes part of it.
    assert "it_vpn-guide.md" in listed and "parking.txt" in listed and "scan.pdf" not in listed


def test_ingest_of_a_file_that_cannot_be_read_names_it_and_goes_on(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "gone.md").write_text("deleted before it is read")
    (folder / "parking.txt").write_text("Visitors park on level -2 of the garage.\n")
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "gone.md":
            raise FileNotFoundError(2, "No such file or directory")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert main(["ingest", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert "skipped: gone.md: No such file or directory" in err
    assert out.strip().splitlines()[-1].startswith("local: 1 documents ingested (0 unchanged, 1 failed), ")


def test_ask_with_nothing_relevant_exits_1(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "What is the wifi password?"]) == 1
    out = capsys.readouterr().out
    assert out.strip()  # says it found nothing, rather than nothing at all
    assert "Sources" not in out


def test_ingest_of_a_missing_path_and_forget_of_an_unknown_name_explain_themselves(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(tmp_path / "missing.md")]) == 1
    assert capsys.readouterr().err.strip().endswith("missing.md: no such file or folder.")

    assert main(["forget", "nothing.md"]) == 1
    assert "threadwise: There is no document called nothing.md" in capsys.readouterr().err


def test_a_second_process_is_told_what_to_do_when_the_embedded_store_is_in_use(tmp_path: Path) -> None:
    store = tmp_path / "chroma"
    open_client(persist_directory=str(store), host=None, port=0)

    opening = f"open_client(persist_directory={str(store)!r}, host=None, port=0)"
    code = f"from rag.chroma import open_client; {opening}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)

    assert done.returncode != 0
    assert f"in use by process {os.getpid()}" in done.stderr
    assert "Stop that process" in done.stderr
    assert "CHROMA_HOST" in done.stderr


async def test_a_local_file_past_the_limit_is_refused_in_the_words_of_every_platform(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 2048)
    ref = FileRef(name="big.txt", size=None, url=str(path))

    with pytest.raises(UserFacingError) as refused:
        await LocalFileFetcher().fetch(ref, max_bytes=1024)

    assert refused.value.message == text.FILE_TOO_LARGE.format(name="big.txt", limit="1 KB")
    assert await LocalFileFetcher().fetch(ref, max_bytes=4096) == b"x" * 2048
    with pytest.raises(UserFacingError, match="no such file"):
        gone = FileRef(name="gone.md", size=None, url=str(tmp_path / "gone.md"))
        await LocalFileFetcher().fetch(gone, max_bytes=1)
