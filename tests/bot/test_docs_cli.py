"""`threadwise docs --verbose`: what each document says about itself, as retrieval reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from rag.embed import SentenceEmbedder
from tests.rag.test_identity import KB, _report


def test_docs_verbose_shows_what_each_document_says_about_itself(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    embedder: SentenceEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(tmp_path / "chroma"))
    report = tmp_path / "initech-q2-2023.md"
    report.write_bytes(_report("initech", "q2", 39_990))
    assert main(["ingest", str(report), "--kb", KB]) == 0
    capsys.readouterr()
    assert main(["docs", "--kb", KB, "--verbose"]) == 0
    listing = capsys.readouterr().out
    about = next(line for line in listing.splitlines() if line.strip().startswith("about:"))
    for term in ("Initech Holdings", "initech q2 2023", "second quarter", "June 30, 2023"):
        assert term in about
    assert main(["docs", "--kb", KB]) == 0
    assert "about:" not in capsys.readouterr().out  # only when asked
