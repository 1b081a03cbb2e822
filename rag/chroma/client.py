"""Chroma clients: a server's (CHROMA_HOST) with timeouts, or the embedded store's, locked to this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag.chroma.files import lock_directory
from rag.errors import ConfigError

SERVER_TIMEOUT_S = 60.0  # the longest a Chroma server call may take (a page of 5000 records)
SERVER_CONNECT_TIMEOUT_S = 5.0


def open_client(
    *, persist_directory: str, host: str | None, port: int, timeout: float = SERVER_TIMEOUT_S
) -> Any:
    """A Chroma client: HttpClient when `host` is set, else an embedded PersistentClient.

    The embedded store is not safe across processes, so this process takes an exclusive lock on
    the directory first; a second process is told what to do instead of corrupting the data.
    """
    import chromadb

    settings = chromadb.Settings(anonymized_telemetry=False)
    if host:
        return _server_client(host, port, settings, timeout=timeout)
    path = Path(persist_directory)
    path.mkdir(parents=True, exist_ok=True)
    lock_directory(path)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def _server_client(host: str, port: int, settings: Any, *, timeout: float) -> Any:
    """An HttpClient whose calls give up after `timeout` seconds.

    chromadb's own HTTP session never times out: a server that stops answering without closing its
    connections (a paused process, a network partition) would hang every call, and the threads
    making them, for good, and /ready with them long after the server is back. A server that does
    not answer at start-up stops it with what to fix, as REDIS_URL does.
    """
    import chromadb
    import httpx

    where = f"CHROMA_HOST={host!r} CHROMA_PORT={port}"
    base = host.rstrip("/") if "://" in host else f"http://{host}:{port}"
    limits = httpx.Timeout(timeout, connect=min(timeout, SERVER_CONNECT_TIMEOUT_S))
    try:
        httpx.get(f"{base}/api/v2/heartbeat", timeout=limits).raise_for_status()
        client = chromadb.HttpClient(host=host, port=port, settings=settings)
    except (httpx.HTTPError, ValueError) as exc:  # chromadb: ValueError("Could not connect…")
        raise ConfigError(
            f"{where}: the Chroma server at {host}:{port} does not answer ({type(exc).__name__}: {exc}). "
            f"Start it (`chroma run --path DIR --host 0.0.0.0 --port {port}`), or correct CHROMA_HOST and "
            "CHROMA_PORT, or unset CHROMA_HOST to keep the store in this process"
        ) from None
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = limits
    return client


def open_unlocked(path: Path) -> Any:
    """Chroma on a directory of our own making (a restore's), without the store's lock."""
    import chromadb

    return chromadb.PersistentClient(path=str(path), settings=chromadb.Settings(anonymized_telemetry=False))
