"""The interfaces the core needs from the platforms and the infrastructure."""

from __future__ import annotations

from typing import Any, Protocol

from bot.core.model import FileRef, Job, Reply, Working


class ReplySender(Protocol):
    async def begin(self, address: dict[str, Any], working: Working) -> dict[str, Any]:
        """Show at once that the bot is working (placeholder, typing). Returns a handle for `update`."""
        ...

    async def update(self, address: dict[str, Any], handle: dict[str, Any], text: str) -> None:
        """Replace the working message with partial text (an answer being streamed)."""
        ...

    async def finish(self, address: dict[str, Any], handle: dict[str, Any], reply: Reply) -> None:
        """Deliver the final reply, replacing the working message where there is one."""
        ...


class FileFetcher(Protocol):
    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes: ...


class Outbound(Protocol):
    """A platform as the core uses it: where replies go and where shared files come from."""

    @property
    def name(self) -> str: ...

    @property
    def sender(self) -> ReplySender: ...

    @property
    def fetcher(self) -> FileFetcher: ...


class JobRunner(Protocol):
    async def submit(self, job: Job) -> None: ...

    async def drain(self) -> None:
        """Wait for every submitted job to finish."""
        ...
