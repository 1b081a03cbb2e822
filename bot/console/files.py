"""Reading a file named at the terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.core.model import FileRef
from rag.errors import UserFacingError


class LocalFileFetcher:
    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes:
        path = Path(file.url)
        if not path.is_file():
            raise UserFacingError(f"{file.url}: no such file.")
        if path.stat().st_size > max_bytes:
            raise UserFacingError(f"{file.name} is larger than the {max_bytes / 1024 / 1024:g} MB limit.")
        return await asyncio.to_thread(path.read_bytes)
