"""The embedding model as an ONNX Runtime session, for questions.

A question is a few dozen word pieces: the torch model takes ~20 ms for one on 2 cores, ONNX Runtime
a few ms. No model can be downloaded, so the session runs the local weights, exported once (torch's
TorchScript exporter, seconds) into a directory that later processes re-use. The file's name carries
a digest of the weights and of the torch and onnxruntime versions: another model or another install
exports anew.

The session computes the transformer only; tokenising (the model's own, with its truncation), mean
pooling and normalisation are done here as sentence-transformers does them. An export is kept only
if its vectors for a few probe texts (short, blank, past the token window; one at a time and as a
padded batch) agree with the torch model's to 1e-5 in cosine. Whatever fails — no `onnx` package, a
directory that cannot be written, a graph the runtime refuses — the caller keeps using torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_FORMAT = 1  # bump when the export below changes what the file holds
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOLERANCE = 1e-5  # the least cosine between this path's vector and torch's is 1 - TOLERANCE
PROBES = (
    "How long is the gene?",
    "  What did the NTSB find about N112ED's engine on 12/08/2007?  ",
    "",
    "word " * 400,  # past the token window: truncated the same way
)


def default_directory() -> Path:
    """Where exports are kept unless configured: beside the installed packages (the venv), so an
    install's exports match its torch and onnxruntime."""
    return Path(sys.prefix) / "share" / "threadwise" / "onnx"


class OnnxQueryEncoder:
    """Normalised sentence vectors from an exported model, with the model's own tokeniser."""

    def __init__(self, model: Any, path: Path, *, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Threads that spin between runs would take CPU from an ingest embedding beside the question.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No arena: it kept ~25 MiB more for one question's few KiB of activations, no faster.
        options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._preprocess = getattr(model, "preprocess", None) or model.tokenize
        self.path = path

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        features = self._preprocess(list(texts))
        feeds = {name: features[name].numpy().astype(np.int64) for name in self._inputs}
        hidden = self._session.run(None, feeds)[0]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        # Any until here (onnxruntime and the tokeniser are untyped, and numpy's stubs give a reduction
        # along an axis as Any): the normalised vectors, (batch, dimension).
        vectors: np.ndarray = pooled / np.clip(norms, 1e-12, None)
        return vectors.astype(np.float32)


def load(model: Any, weights_dir: str, directory: Path, *, threads: int = 0) -> OnnxQueryEncoder:
    """The encoder for `model` (loaded from `weights_dir`), exported into `directory` first if it is
    not there yet. Raises when it cannot be made or does not agree with `model`."""
    path = directory / f"minilm-{_fingerprint(weights_dir)}.onnx"
    if not path.exists():
        export(model, path, threads=threads)
    return OnnxQueryEncoder(model, path, threads=threads)


def disagreement(model: Any, encoder: OnnxQueryEncoder) -> float:
    """The largest 1 - cosine between the encoder's and the torch model's vectors for the probes,
    one at a time (as questions come) and together (a padded batch)."""
    texts = list(PROBES)
    torch_vectors = np.asarray(
        model.encode(texts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32
    )
    single = np.stack([encoder.encode([t])[0] for t in texts])
    batch = encoder.encode(texts)
    cosines = np.concatenate([(single * torch_vectors).sum(axis=1), (batch * torch_vectors).sum(axis=1)])
    return float(1.0 - cosines.min())


def export(model: Any, path: Path, *, threads: int = 0) -> None:
    """Export the model's transformer (token ids → last hidden state) to `path`, if its vectors agree
    with the torch model's (checked once, here: the file's name pins the versions that made it).
    Atomic: a concurrent reader sees no file or the whole, checked one."""
    import torch

    transformer = model[0].auto_model

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    preprocess = getattr(model, "preprocess", None) or model.tokenize
    sample = preprocess(["an example question", "a longer example, so that the batch is padded"])
    args = tuple(sample[name] for name in INPUTS)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".export-", suffix=".onnx")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                LastHiddenState().eval(),
                args,
                tmp,
                dynamo=False,
                input_names=list(INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
            )
        worst = disagreement(model, OnnxQueryEncoder(model, Path(tmp), threads=threads))
        if worst > TOLERANCE:
            raise RuntimeError(f"the exported model's vectors differ from torch's (1 - cosine {worst:.1e})")
        os.chmod(tmp, 0o644)  # readable by whoever runs the service, like the installed packages
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fingerprint(weights_dir: str) -> str:
    """A digest of the weights and configuration files, and of the versions that shape the export."""
    import onnxruntime
    import torch

    digest = hashlib.sha256(f"{EXPORT_FORMAT} {torch.__version__} {onnxruntime.__version__}".encode())
    root = Path(weights_dir)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        if file.suffix in {".onnx", ".lock"} or "onnx" in file.parts[len(root.parts) :]:
            continue  # files the package may ship for other runtimes do not change this model
        digest.update(str(file.relative_to(root)).encode())
        with file.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
