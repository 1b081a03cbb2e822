"""A worker's metrics port when several workers share a machine (the simple way to use more cores).

All of them are started with the same WORKER_METRICS_PORT; the first takes it, each next one takes the
next free port above it and says which. A busy port never stops a worker: its jobs matter more than
its metrics. `threadwise check` uses the same search to say what a worker started now would do.
"""

from __future__ import annotations

import errno
import socket

import structlog
from aiohttp import web

from bot.infra.metrics import Metrics, start_metrics_server

log = structlog.get_logger(__name__)

PORT_TRIES = 16  # ports tried from WORKER_METRICS_PORT up: more workers than this on one machine is rare


def candidates(port: int) -> range:
    return range(port, min(port + PORT_TRIES, 65536))


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port already (a quick bind, released at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def next_free_port(host: str, port: int) -> int | None:
    """The port a worker started now would serve its metrics on; None: none of the candidates."""
    return next((p for p in candidates(port) if not port_in_use(host, p)), None)


async def serve_worker_metrics(metrics: Metrics, *, host: str, port: int) -> web.AppRunner | None:
    """GET /metrics on `port`, or on the next free port above it (logged); None, with a warning,
    when every candidate is taken. Other errors (a host this machine does not have) still stop."""
    for candidate in candidates(port):
        try:
            runner = await start_metrics_server(metrics, host=host, port=candidate)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        if candidate != port:
            log.warning("metrics_port_taken", wanted=port, port=candidate)
        return runner
    last = candidates(port)[-1]
    log.warning("metrics_off", reason=f"ports {port}-{last} are all in use", wanted=port)
    return None
