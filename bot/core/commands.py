"""Recognising commands (`help`, `docs`, `forget NAME`, `stats`) in what a user wrote."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = ("help", "docs", "forget", "stats")
_ALIASES = {"list": "docs", "documents": "docs", "delete": "forget", "?": "help"}
_WRAPPERS = {"`": "`", "*": "*", "_": "_", '"': '"', "'": "'", "“": "”", "‘": "’"}


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
        return Command("forget", rest)  # as written: a name may start or end with `*_"'
    if rest and not text.lstrip().startswith("/"):
        return None
    return Command(head)


def name_candidates(argument: str) -> list[str]:
    """What `forget ARGUMENT` may mean, most literal first: the argument as written, then without
    the quotes or markup around it (`forget "my notes.md"`, a name pasted as `code`), layer by layer,
    then with every such character stripped from both ends."""
    found = [argument]
    inner = argument
    while len(inner) > 2 and _WRAPPERS.get(inner[0]) == inner[-1]:
        inner = inner[1:-1].strip()
        found.append(inner)
    found.append(argument.strip("`*_\"'“”‘’ "))
    return [c for c in dict.fromkeys(found) if c]
