"""The engine and its clients, from Settings: Chroma, the embedding model, the answerer, the query cache."""

from __future__ import annotations

from functools import partial

import redis
from redis.exceptions import RedisError

from bot.settings import Settings
from rag.answer import build_answerer
from rag.cache import QueryCache, SemanticCache
from rag.chroma import open_store as open_chroma
from rag.embed import SentenceEmbedder
from rag.engine import Engine, StageFailureObserver, StageObserver
from rag.errors import ConfigError
from rag.focus import SentenceHighlighter
from rag.redact import redact
from rag.search import SearchOptions
from rag.store import VectorStore
from rag.types import Answer, EngineLimits


def build_engine(
    settings: Settings,
    *,
    stage_observer: StageObserver | None = None,
    failure_observer: StageFailureObserver | None = None,
    embedder: SentenceEmbedder | None = None,
    store: VectorStore | None = None,
) -> Engine:
    """`embedder`, `store`: the model's and the one Settings name, unless a test or a benchmark
    brings its own. `failure_observer` hears of failed stages, the LLM's (answered extractively) too."""
    store = store or open_store(settings)
    embedder = embedder or SentenceEmbedder(
        cache_size=settings.embedding_cache_size,
        cache_ttl=settings.embedding_cache_ttl,
        query_runtime=settings.embedding_query_runtime,
        onnx_dir=settings.embedding_onnx_dir or None,
    )
    return Engine(
        store=store,
        embedder=embedder,
        answerer=build_answerer(
            provider=settings.llm_provider,
            groq_api_key=settings.groq_api_key,
            groq_model=settings.groq_model,
            groq_base_url=settings.groq_base_url,
            timeout_s=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            highlighter=SentenceHighlighter(embedder),
            on_failure=partial(failure_observer, "llm") if failure_observer else None,
        ),
        limits=EngineLimits(
            max_bytes=settings.max_file_bytes,
            allowed_types=frozenset(settings.allowed_file_types),
            chunk_tokens=settings.chunk_max_tokens,
        ),
        search_options=SearchOptions(
            top_k=settings.search_top_k,
            min_similarity=settings.search_min_similarity,
            hybrid=settings.search_hybrid,
        ),
        query_cache=build_query_cache(settings),
        stage_observer=stage_observer,
        failure_observer=failure_observer,
    )


def open_store(settings: Settings) -> VectorStore:
    """The Chroma server CHROMA_HOST names, or the embedded store in CHROMA_PERSIST_DIRECTORY (which
    this process then holds alone)."""
    return open_chroma(
        persist_directory=settings.chroma_persist_directory,
        host=settings.chroma_host,
        port=settings.chroma_port,
        prefix=settings.chroma_collection_name,
    )


def build_query_cache(settings: Settings) -> QueryCache[Answer]:
    """In Redis when REDIS_URL is set (every process shares it), else in this process."""
    if not settings.redis_url:
        return SemanticCache[Answer](
            size=settings.query_cache_size,
            ttl=settings.query_cache_ttl,
            threshold=settings.query_cache_similarity_threshold,
        )
    from rag.redis_cache import RedisQueryCache, decode_answer, encode_answer

    return RedisQueryCache[Answer](
        open_redis(settings.redis_url),  # synchronous: the engine calls its cache from worker threads
        size=settings.query_cache_size,
        ttl=settings.query_cache_ttl,
        threshold=settings.query_cache_similarity_threshold,
        encode=encode_answer,
        decode=decode_answer,
    )


def open_redis(url: str) -> redis.Redis:
    """A synchronous client that has answered a PING: a REDIS_URL that does not answer stops start-up."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        client.ping()
    except (RedisError, ValueError) as exc:  # ValueError: not a redis:// rediss:// unix:// URL
        raise ConfigError(
            f"REDIS_URL={redact(url)!r} is not usable: {type(exc).__name__}: {redact(str(exc))}. "
            "Start Redis there, or correct REDIS_URL (e.g. redis://localhost:6379/0), "
            "or unset it to keep state in this process"
        ) from None
    return client
