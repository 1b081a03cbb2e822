"""structlog, configured once: console locally, JSON with LOG_FORMAT=json, a rotating file with LOG_FILE."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from rag.redact import redact


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "console",
    file: str | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backup_count: int = 5,
    stream: Any = None,
) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_values,  # after the traceback is text: it may quote a URL too
            renderer,
        ],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file:
        rotating = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backup_count)
        handlers.append(rotating)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    # Libraries that chatter at INFO about every HTTP call or model file.
    for noisy in ("httpx", "chromadb", "sentence_transformers", "urllib3", "transformers", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _redact_values(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """No password or token of a URL in any log line (ours or a library's debug output)."""
    return {key: redact(value) if isinstance(value, str) else value for key, value in event.items()}
