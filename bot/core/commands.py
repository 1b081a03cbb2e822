"""Recognising commands (`help`, `docs`, `forget NAME`, `stats`) in what a user wrote."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = ("help", "docs", "forget", "stats")
_ALIASES = {"list": "docs", "documents": "docs", "delete": "forget", "?": "help"}


@dataclass(frozen=True)
class Command:
    name: str
    argument: str = ""


def parse_command(text: str) -> Command | None:
    """A command when the message is one: a bare command word, or a word after `/` or `/threadwise`.

    Questions that merely start with a command word ("help me find the VPN guide") are questions:
    only `forget` takes an argument, and `help`/`docs`/`stats` must stand alone.
    """
    words = text.strip().split(maxsplit=1)
    if not words:
        return None
    head = words[0].lower()
    rest = words[1].strip() if len(words) > 1 else ""
    if head == "/threadwise":
        return parse_command(rest) or Command("help")
    head = head.removeprefix("/")
    head = _ALIASES.get(head, head)
    if head not in COMMANDS:
        return None
    if head == "forget":
        return Command("forget", rest.strip("`*_\"' "))
    if rest and not text.lstrip().startswith("/"):
        return None
    return Command(head)
