"""Questions embedded with ONNX Runtime: the same vectors as the torch model's, the export kept and
re-used, and torch whenever the ONNX path cannot be set up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag import onnx_query
from rag.embed import SentenceEmbedder, model_path

QUESTIONS = [
    "How long is the SAIBK gene?",
    "What did the NTSB find about N112ED's engine on 12/08/2007?",
    "   leading and trailing blanks   ",
    "Ünïcödé — ¿qué tal? 日本語の質問",
    "",
    "a question far longer than the model's window " * 40,  # truncated at 256 word pieces
]


def _embedder(runtime: str, onnx_dir: Path | None = None) -> SentenceEmbedder:
    embedder = SentenceEmbedder(
        cache_size=0, cache_ttl=0, query_runtime=runtime, onnx_dir=str(onnx_dir) if onnx_dir else None
    )
    embedder.prepare_queries()
    return embedder


def test_onnx_question_vectors_equal_torchs() -> None:
    onnx, torch = _embedder("onnx"), _embedder("torch")
    assert (onnx.query_runtime, torch.query_runtime) == ("onnx", "torch")
    for question in QUESTIONS:
        a, b = onnx.embed_query(question), torch.embed_query(question)
        assert a.shape == b.shape == (384,) and a.dtype == np.float32
        assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
        assert 1.0 - float(a @ b) < 1e-5, question
    # Several questions in one run (padded to the longest) get the vectors they get alone.
    together = onnx._run_queries(QUESTIONS)
    alone = np.stack([torch.embed_query(q) for q in QUESTIONS])
    assert float((1.0 - (together * alone).sum(axis=1)).max()) < 1e-5


def test_the_export_is_kept_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = _embedder("onnx")  # exported into the default directory, if it was not already
    model = embedder._model
    directory = onnx_query.default_directory()
    assert list(directory.glob("minilm-*.onnx"))

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_query, "export", no_export)
    encoder = onnx_query.load(model, model_path(), directory)
    assert onnx_query.disagreement(model, encoder) < 1e-5


def test_an_export_that_disagrees_with_torch_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = _embedder("torch")
    monkeypatch.setattr(onnx_query, "disagreement", lambda model, encoder: 0.01)
    with pytest.raises(RuntimeError, match="differ"):
        onnx_query.export(embedder._model, tmp_path / "minilm-x.onnx")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_questions_fall_back_to_torch_when_the_export_cannot_be_written(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    embedder = _embedder("onnx", onnx_dir=blocked / "onnx")
    assert embedder.query_runtime == "torch"
    vector = embedder.embed_query("How long is the SAIBK gene?")
    reference = _embedder("torch").embed_query("How long is the SAIBK gene?")
    np.testing.assert_allclose(vector, reference, atol=1e-6)
