"""The interfaces the core needs from the platforms and the infrastructure."""

from __future__ import annotations

from typing import Protocol

from bot.core.model import Address, FileRef, Handle, Job, Reply, Terms, Update, Working


class ReplySender(Protocol):
    """Shows a job's progress and its reply in the platform's thread. How each thing looks (a
    placeholder, a status, typing; a cursor after a partial answer; progress) is the sender's."""

    async def begin(self, address: Address, working: Working) -> Handle | None:
        """Show at once that the bot is working (placeholder, typing). Returns what `update`
        replaces (None: nothing to replace)."""
        ...

    async def update(self, address: Address, handle: Handle | None, update: Update) -> Handle | None:
        """Show how the job is going (an answer being streamed, an ingest's progress) in place of
        `handle`. Returns the message now shown, for the next update or the final reply."""
        ...

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> str | None:
        """Deliver the final reply, replacing the working message where there is one. Returns the
        platform's id of the message that holds it where votes on it name that id rather than
        `reply.ref` (a Teams activity id), else None."""
        ...


class FileFetcher(Protocol):
    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes:
        """The file's bytes; never more than `max_bytes` of them in memory (bot.core.files.read_capped).

        What goes wrong is said by the type of what is raised:

        - UserFacingError: the file's fault — too large, gone, its link expired, not where files of
          this platform live. The message is the user's to read, and the other files go on.
        - RetryableError: the network's — a timeout, a refused connection, HTTP 429 or 5xx. A queue
          worker runs the job again later; in-process the user gets the apology.
        - anything else: a bug or a broken set-up (a token without access). It is logged, and the
          user gets an apology with a reference.
        """
        ...


class Outbound(Terms, Protocol):
    """A platform as the core uses it: where replies go, where shared files come from, how people
    ask there (for `help`), and how its addresses read back from a queued job."""

    @property
    def name(self) -> str: ...

    @property
    def sender(self) -> ReplySender: ...

    @property
    def fetcher(self) -> FileFetcher: ...

    @property
    def ask_how(self) -> str: ...


class JobRunner(Protocol):
    async def submit(self, job: Job) -> None: ...

    async def drain(self) -> None:
        """Wait for every submitted job to finish."""
        ...
