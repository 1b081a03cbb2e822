"""Reading a shared file without ever holding more of it than the size limit: one helper for every
platform's FileFetcher (see `bot.core.ports.FileFetcher` for what a fetcher raises)."""

from __future__ import annotations

from collections.abc import AsyncIterable

from bot.core import text
from rag.errors import UserFacingError
from rag.filetypes import human_size

CHUNK = 64 * 1024  # what a fetcher reads at a time


async def read_capped(
    chunks: AsyncIterable[bytes], *, name: str, max_bytes: int, declared: int | None = None
) -> bytes:
    """The bytes of `chunks`, read until they pass `max_bytes`: then the file is too large, and the
    rest is never read. `declared`: the size the source states (a Content-Length, a file's size),
    refused before anything is read."""
    if declared is not None and declared > max_bytes:
        raise too_large(name, max_bytes)
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > max_bytes:
            raise too_large(name, max_bytes)
    return bytes(data)


def too_large(name: str, max_bytes: int) -> UserFacingError:
    return UserFacingError(text.FILE_TOO_LARGE.format(name=name, limit=human_size(max_bytes)))
