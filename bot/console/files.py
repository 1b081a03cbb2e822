"""Reading a file named at the terminal, in worker threads, capped like a download (bot/core/files.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from bot.core.files import CHUNK, read_capped
from bot.core.model import FileRef
from rag.errors import UserFacingError


class LocalFileFetcher:
    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes:
        path = Path(file.url)
        try:
            stream = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise UserFacingError(f"{file.url}: no such file.") from None
        with stream:
            size = (await asyncio.to_thread(path.stat)).st_size
            return await read_capped(_chunks(stream), name=file.name, max_bytes=max_bytes, declared=size)


async def _chunks(stream: BinaryIO) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(stream.read, CHUNK):
        yield chunk
