"""Data rights from the command line: `threadwise forget --user ID` and `threadwise forget --kb KB`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.cli import main
from bot.core import text
from rag.embed import SentenceEmbedder


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, tmp_path: Path, embedder: SentenceEmbedder) -> Path:
    """A fresh install's environment on an embedded store under tmp_path (model already loaded)."""
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(tmp_path / "data" / "chroma"))
    clean_env.setenv("LLM_PROVIDER", "extractive")
    return tmp_path


def _file(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text(body)
    return str(path)


def _docs(capsys: pytest.CaptureFixture[str], kb: str) -> str:
    capsys.readouterr()
    assert main(["docs", "--kb", kb]) == 0
    return capsys.readouterr().out


@pytest.fixture
def uploads(env: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Dana (U1) uploaded to two knowledge bases, one with a name that is no valid collection name;
    Sam (U2) to one."""
    for args in (
        [_file(env, "vpn.md", "# VPN\n\nThe VPN certificate expires every 90 days.\n"), "--uploader", "U1"],
        [_file(env, "pets.md", "# Pets\n\nDogs are welcome on Fridays.\n"), "--uploader", "U2"],
        [_file(env, "wifi.md", "# Wifi\n\nThe guest wifi is called Visitors.\n"), "--uploader", "U1"],
    ):
        kb = ["--kb", "Acme Corp"] if args[0].endswith("wifi.md") else []
        assert main(["ingest", *args, *kb]) == 0
    capsys.readouterr()
    return env


def test_forget_user_removes_everything_they_uploaded_in_every_knowledge_base(
    uploads: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Under pytest stdin is no terminal: without --yes nothing is deleted.
    assert main(["forget", "--user", "U1"]) == 1
    captured = capsys.readouterr()
    assert "Acme Corp: wifi.md\nlocal: vpn.md\n" in captured.out
    assert "Delete these 2 documents uploaded by U1? Add --yes to confirm" in captured.err
    assert "vpn.md" in _docs(capsys, "local")

    assert main(["forget", "--user", "U1", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Deleted 2 documents (2 passages) uploaded by U1:\n  Acme Corp: wifi.md\n  local: vpn.md\n" in out
    assert (
        "Backups taken before now still hold it until they are older than BACKUP_RETENTION_DAYS (30)" in out
    )
    local = _docs(capsys, "local")
    assert "pets.md" in local and "vpn.md" not in local  # Sam's document stays
    assert text.NO_DOCUMENTS in _docs(capsys, "Acme Corp")

    assert main(["forget", "--user", "U1", "--yes"]) == 0
    assert "No documents uploaded by U1 in any knowledge base (Acme Corp, local): nothing to delete." in (
        capsys.readouterr().out
    )


def test_forget_user_in_one_knowledge_base_leaves_the_others(
    uploads: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["forget", "--user", "U1", "--kb", "local", "--yes"]) == 0
    assert "Deleted 1 document (1 passage) uploaded by U1:\n  local: vpn.md\n" in capsys.readouterr().out
    assert "wifi.md" in _docs(capsys, "Acme Corp")
    assert main(["forget", "--user", "U2", "--kb", "Acme Corp", "--yes"]) == 0
    assert "No documents uploaded by U2 in Acme Corp: nothing to delete." in capsys.readouterr().out


def test_forget_kb_drops_a_whole_knowledge_base_after_asking(
    uploads: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["forget", "--kb", "local"]) == 1
    captured = capsys.readouterr()
    assert "Drop the knowledge base local (2 documents, 2 passages)? [y/N]" in captured.out
    assert "Not confirmed: nothing was changed." in captured.err
    assert "vpn.md" in _docs(capsys, "local")

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["forget", "--kb", "local"]) == 0
    assert "Dropped the knowledge base local: 2 documents and 2 passages deleted." in capsys.readouterr().out
    assert text.NO_DOCUMENTS in _docs(capsys, "local")
    assert "wifi.md" in _docs(capsys, "Acme Corp")

    assert main(["forget", "--kb", "nowhere", "--yes"]) == 1
    assert "There is no knowledge base called nowhere. Knowledge bases: Acme Corp, local." in (
        capsys.readouterr().err
    )


def test_forget_says_what_it_needs(uploads: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forget"]) == 1
    assert "Say what to delete: a document NAME, --user ID" in capsys.readouterr().err
    assert main(["forget", "vpn.md", "--user", "U1"]) == 1
    assert "Give a document NAME or --user ID, not both." in capsys.readouterr().err
    assert main(["forget", "--all-kbs"]) == 1
    assert "--all-kbs goes with --user ID" in capsys.readouterr().err
    assert main(["forget", "vpn.md"]) == 0  # one document, as before
    assert capsys.readouterr().out.strip() == "Deleted vpn.md (1 passage) from local."
