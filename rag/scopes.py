"""Who may see a document: its scope, and what a question or a listing may see (its visibility).

A document's scope is `workspace` (answers anywhere in its workspace or tenant), `channel:<id>`
(only questions asked in that channel and its threads) or `private:<user>` (only that user, in their
direct messages with the bot). Documents stored before scopes existed are workspace documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

WORKSPACE = "workspace"


def channel_scope(channel: str) -> str:
    return f"channel:{channel}"


def private_scope(user: str) -> str:
    return f"private:{user}"


def is_scope(value: str) -> bool:
    kind, _, owner = value.partition(":")
    return value == WORKSPACE or (kind in ("channel", "private") and bool(owner) and owner == owner.strip())


def describe(scope: str) -> str:
    """Who may see a document of this scope, as a listing says it."""
    kind, _, owner = (scope or WORKSPACE).partition(":")
    if kind == "channel":
        return f"only in channel {owner}"
    if kind == "private":
        return f"private to {owner}"
    return "the whole workspace"


@dataclass(frozen=True)
class Visibility:
    """The scopes a question (or a listing) may read; `everything` for an operator's view."""

    scopes: frozenset[str] = frozenset({WORKSPACE})
    everything: bool = False

    @classmethod
    def of(cls, *scopes: str) -> Visibility:
        return cls(frozenset({WORKSPACE, *scopes}))

    def sees(self, scope: str) -> bool:
        return self.everything or (scope or WORKSPACE) in self.scopes

    def among(self, present: Iterable[str]) -> Visibility:
        """This visibility narrowed to the scopes a knowledge base holds: two places that see the same
        documents there see them alike (one query-cache namespace, no store filter when all is seen)."""
        held = set(present)
        if self.everything:
            return Visibility(frozenset(held), everything=True)
        return Visibility(frozenset(s for s in self.scopes if s in held))

    @property
    def key(self) -> str:
        return "*" if self.everything else "|".join(sorted(self.scopes))


EVERYTHING = Visibility(everything=True)
WORKSPACE_ONLY = Visibility()
