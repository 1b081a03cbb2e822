"""One line for a failure of the machine or a service around threadwise, as the CLI prints it.

A full disk, a folder this user may not write, a Redis or Chroma server that does not answer: the
operator needs what happened, where, and what to do, not a traceback (the engine has already left
the knowledge base as it was: a document is written all or nothing). Anything else is a bug, named
in one line too; LOG_LEVEL=DEBUG logs its traceback.
"""

from __future__ import annotations

import errno

from bot.settings import Settings
from rag.redact import redact

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
NOT_ALLOWED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# What SQLite (inside Chroma) says for the same conditions; it reports no errno.
_DISK_FULL_TEXT = ("database or disk is full", "no space left on device", "disk quota exceeded")
_NOT_ALLOWED_TEXT = ("attempt to write a readonly database", "permission denied", "read-only file system")


def describe(exc: BaseException, settings: Settings | None) -> str | None:
    """The line to print for an operational failure (credentials masked), or None if it is not one.

    The causes are looked at too: a library may wrap the OSError that says what really happened.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        line = _os_error(current, settings) or _service(current, settings) or _by_text(current, settings)
        if line:
            return redact(line)
        current = current.__cause__ or current.__context__
    return None


def unexpected(exc: BaseException) -> str:
    return redact(
        f"unexpected error ({type(exc).__name__}: {exc}"[:300] + "); run with LOG_LEVEL=DEBUG to log where"
    )


def _os_error(exc: BaseException, settings: Settings | None) -> str | None:
    if not isinstance(exc, OSError) or isinstance(exc, ConnectionError | TimeoutError):
        return None
    where = f": {exc.filename}" if exc.filename else ""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in DISK_FULL:
        return f"the disk is full{where} ({reason}). Free some space and run it again; {_KEPT}"
    if exc.errno in NOT_ALLOWED:
        return f"permission denied{where} ({reason}). {_fix_access(settings)}"
    if exc.filename:
        return f"{exc.filename}: {reason}"
    return None


def _service(exc: BaseException, settings: Settings | None) -> str | None:
    """Redis or a Chroma server that does not answer (their clients' connection errors)."""
    module = type(exc).__module__
    if module.startswith("redis") and isinstance(exc, (ConnectionError, TimeoutError, *_redis_errors())):
        url = settings.redis_url if settings and settings.redis_url else "REDIS_URL"
        return (
            f"cannot reach Redis at REDIS_URL={url} ({exc}). Start Redis there or correct REDIS_URL; "
            "nothing was changed"
        )
    if module.startswith(("httpx", "httpcore")) and settings and settings.chroma_host:
        server = f"{settings.chroma_host}:{settings.chroma_port}"
        return (
            f"cannot reach the Chroma server at {server} ({type(exc).__name__}: {exc}). Start it or correct "
            "CHROMA_HOST and CHROMA_PORT, then run it again"
        )
    return None


def _by_text(exc: BaseException, settings: Settings | None) -> str | None:
    text = str(exc)
    lowered = text.lower()
    if any(words in lowered for words in _DISK_FULL_TEXT):
        return f"the disk is full ({_short(text)}). Free some space and run it again; {_KEPT}"
    if any(words in lowered for words in _NOT_ALLOWED_TEXT):
        return f"permission denied ({_short(text)}). {_fix_access(settings)}"
    return None


_KEPT = "documents already stored are unchanged and the one being written was not kept"


def _fix_access(settings: Settings | None) -> str:
    store = f" ({settings.chroma_persist_directory})" if settings else ""
    return (
        "Run threadwise as a user that may write there, or point CHROMA_PERSIST_DIRECTORY"
        f"{store} and BACKUP_DIR at folders it may write"
    )


def _short(text: str) -> str:
    """The last clause of a wrapped message ("Query error: Database error: … disk is full")."""
    return text.rsplit(": ", 1)[-1].strip()[:200] or text[:200]


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError)
