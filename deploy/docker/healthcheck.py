"""The image's HEALTHCHECK: exit 0 when this container's threadwise process answers, else 1.

`threadwise serve` answers GET /health on PORT; `threadwise worker` has no web service, only its
GET /metrics on WORKER_METRICS_PORT. One image runs either, so either answer means healthy.

It runs every 30 s, so it reads the three settings it needs from the environment and `.env` (as
Settings does) instead of importing threadwise, which takes seconds of CPU. tests/test_deploy.py
checks these defaults against Settings. Standard library and python-dotenv only: slim has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.request

from dotenv import dotenv_values

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = "3978"
DEFAULT_WORKER_METRICS_PORT = "3979"
TIMEOUT_S = 3


def settings() -> dict[str, str]:
    """Upper-cased names, the environment over `.env`, as pydantic-settings resolves them."""
    found = {k.upper(): v for k, v in dotenv_values(".env").items() if v is not None}
    found.update({k.upper(): v for k, v in os.environ.items()})
    return found


def urls(values: dict[str, str]) -> list[str]:
    host = values.get("HOST") or DEFAULT_HOST
    # A wildcard address is reached on loopback; a specific one only on itself.
    host = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
    found = [f"http://{host}:{values.get('PORT') or DEFAULT_PORT}/health"]
    worker_port = values.get("WORKER_METRICS_PORT") or DEFAULT_WORKER_METRICS_PORT
    if worker_port != "0":
        found.append(f"http://{host}:{worker_port}/metrics")
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return bool(response.status == 200)
    except OSError:  # refused, timed out, or an HTTP error status
        return False


def main() -> int:
    return 0 if any(answers(url) for url in urls(settings())) else 1


if __name__ == "__main__":
    sys.exit(main())
