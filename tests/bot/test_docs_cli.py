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


def test_the_operator_sets_and_sees_who_may_see_each_document(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    embedder: SentenceEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.setenv("CHROMA_PERSIST_DIRECTORY", str(tmp_path / "chroma"))
    clean_env.setenv("LLM_PROVIDER", "extractive")
    sales, handbook = tmp_path / "sales.md", tmp_path / "handbook.md"
    sales.write_text("# Sales\n\nThe sales team gets a bonus every quarter.\n")
    handbook.write_text("# Handbook\n\nThe office opens at eight.\n")
    assert main(["ingest", str(sales), "--scope", "channel:C123"]) == 0
    assert main(["ingest", str(handbook)]) == 0
    capsys.readouterr()

    assert main(["docs"]) == 0
    listing = capsys.readouterr().out
    assert "sales.md — 1 passage" in listing and "(only in channel C123)" in listing
    assert "handbook.md — 1 passage" in listing and "handbook.md — 1 passage, by" in listing
    assert main(["docs", "--scope", "channel:C123"]) == 0
    only = capsys.readouterr().out
    assert "sales.md" in only and "handbook.md" not in only

    assert main(["ingest", str(sales), "--scope", "workspace"]) == 0  # the same bytes: one manifest write
    assert "1 documents ingested (0 unchanged, 0 failed)" in capsys.readouterr().out
    assert main(["docs", "--scope", "workspace"]) == 0
    assert "sales.md" in capsys.readouterr().out
    assert main(["ingest", str(sales), "--scope", "private:U9"]) == 0  # kept for U9: U9's to manage
    assert main(["docs", "--scope", "private:U9"]) == 0
    assert "sales.md — 1 passage, by U9" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit:
        main(["ingest", str(sales), "--scope", "everyone"])
    assert exit.value.code == 2 and "is not a scope" in capsys.readouterr().err
