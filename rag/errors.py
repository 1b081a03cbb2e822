"""The small error vocabulary shared by the engine and the chat side.

UserFacingError carries a message that is safe to show to a person as is. RetryableError marks a
failure that may go away if the same work is tried again later (the runner retries it). ConfigError
stops start-up with one actionable line.
"""


class ThreadwiseError(Exception):
    """Base class for every error threadwise raises on purpose."""


class UserFacingError(ThreadwiseError):
    """A failure whose message is written for the user and safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableError(ThreadwiseError):
    """A transient failure: the same work may succeed when retried."""


class ConfigError(ThreadwiseError):
    """A configuration problem found at start-up; the message says what to change."""


class StoreInUseError(ConfigError):
    """Another process holds the embedded store; `owner` is its process id as it wrote it."""

    def __init__(self, message: str, *, owner: str) -> None:
        super().__init__(message)
        self.owner = owner
