"""Shared fixtures: the real embedding model (loaded once), engines on a real embedded Chroma."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.answer import Answerer, ExtractiveAnswerer
from rag.cache import QueryCache, SemanticCache
from rag.chroma import ChromaStore, open_client
from rag.embed import SentenceEmbedder
from rag.engine import Engine, StageObserver
from rag.extract import SUPPORTED_EXTENSIONS
from rag.focus import SentenceHighlighter
from rag.search import SearchOptions
from rag.types import Answer, EngineLimits

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or a clean skip where a clone has no ../shared."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared is absent)")
    return path


@pytest.fixture(autouse=True)
def _own_feedback_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test its own FEEDBACK_PATH (a test that clears the environment and changes directory
    gets one under its own directory): votes never carry over from one test to the next."""
    monkeypatch.setenv("FEEDBACK_PATH", str(tmp_path / "feedback.sqlite3"))


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    emb = SentenceEmbedder(cache_size=10_000, cache_ttl=0)
    emb.load()
    return emb


EngineFactory = Callable[..., Engine]


@pytest.fixture
def store(tmp_path: Path) -> ChromaStore:
    """The embedded Chroma in tmp_path that make_engine's engines use unless given another."""
    client = open_client(persist_directory=str(tmp_path / "chroma"), host=None, port=0)
    return ChromaStore(client, prefix="test")


@pytest.fixture
def make_engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EngineFactory]:
    """Engines on a fresh embedded Chroma in tmp_path; keyword arguments override the defaults.
    The real model (the session's `embedder`) is loaded only for an engine given no `embedder`."""

    def factory(
        *,
        embedder: SentenceEmbedder | None = None,
        answerer: Answerer | None = None,
        store: ChromaStore | None = None,
        max_bytes: int = 10 * 1024 * 1024,
        allowed_types: frozenset[str] = SUPPORTED_EXTENSIONS,
        options: SearchOptions | None = None,
        query_cache: QueryCache[Answer] | None = None,
        stage_observer: StageObserver | None = None,
        **cache: Any,
    ) -> Engine:
        if embedder is None:
            embedder = request.getfixturevalue("embedder")
        if store is None:
            store = request.getfixturevalue("store")
        return Engine(
            store=store,
            embedder=embedder,
            answerer=answerer
            or ExtractiveAnswerer(reason="disabled", highlighter=SentenceHighlighter(embedder)),
            limits=EngineLimits(max_bytes=max_bytes, allowed_types=allowed_types),
            search_options=options or SearchOptions(),
            query_cache=query_cache
            if query_cache is not None
            else SemanticCache[Answer](
                size=cache.get("size", 100), ttl=cache.get("ttl", 0), threshold=cache.get("threshold", 0.95)
            ),
            stage_observer=stage_observer,
        )

    yield factory
