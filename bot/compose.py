"""Building the object graph from Settings: the one place that knows every concrete class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.dispatch import Dispatcher
from bot.core.handlers import JobHandler
from bot.core.ports import FileFetcher, ReplySender
from bot.core.runner import InProcessRunner
from bot.core.state import MemoryDeduplicator, MemoryRateLimiter, MemoryThreadMemory, ThreadMemory
from bot.settings import Settings
from rag.answer import build_answerer
from rag.cache import SemanticCache
from rag.embed import SentenceEmbedder
from rag.engine import Engine, EngineLimits
from rag.search import SearchOptions
from rag.store import KnowledgeStore, open_client
from rag.types import Answer


def build_engine(settings: Settings) -> Engine:
    client = open_client(
        persist_directory=settings.chroma_persist_directory,
        host=settings.chroma_host,
        port=settings.chroma_port,
    )
    return Engine(
        store=KnowledgeStore(
            client, prefix=settings.chroma_collection_name, exclusive=not settings.chroma_host
        ),
        embedder=SentenceEmbedder(
            cache_size=settings.embedding_cache_size, cache_ttl=settings.embedding_cache_ttl
        ),
        answerer=build_answerer(
            provider=settings.llm_provider,
            groq_api_key=settings.groq_api_key,
            groq_model=settings.groq_model,
            groq_base_url=settings.groq_base_url,
            timeout_s=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
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
        query_cache=SemanticCache[Answer](
            size=settings.query_cache_size,
            ttl=settings.query_cache_ttl,
            threshold=settings.query_cache_similarity_threshold,
        ),
    )


@dataclass
class ChatApp:
    """The chat side wired together: dispatcher in front, runner and handler behind."""

    dispatcher: Dispatcher
    runner: InProcessRunner
    handler: JobHandler
    memory: ThreadMemory


def build_chat_app(
    settings: Settings,
    engine: Engine,
    *,
    senders: Mapping[str, ReplySender],
    fetchers: Mapping[str, FileFetcher],
) -> ChatApp:
    memory = MemoryThreadMemory()
    handler = JobHandler(
        engine=engine,
        senders=senders,
        fetchers=fetchers,
        memory=memory,
        max_file_mb=settings.max_file_size_mb,
    )
    runner = InProcessRunner(handler.run)
    dispatcher = Dispatcher(
        runner=runner,
        senders=senders,
        dedup=MemoryDeduplicator(),
        limiter=MemoryRateLimiter(
            per_minute=settings.rate_limit_requests_per_minute, burst=settings.rate_limit_burst
        ),
        kb_for=settings.kb_for,
        admins=settings.admin_user_ids,
    )
    return ChatApp(dispatcher, runner, handler, memory)
