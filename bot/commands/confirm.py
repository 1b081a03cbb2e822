"""Asking an operator before a command deletes or replaces much: `--yes` or a `y` at the terminal."""

from __future__ import annotations

from typing import TextIO

from rag.errors import UserFacingError


def confirm(question: str, *, yes: bool, stdin: TextIO, out: TextIO) -> None:
    """Returns when confirmed; raises UserFacingError (nothing done) otherwise.

    Without a terminal to ask in, only `--yes` confirms: a script never deletes by accident.
    """
    if yes:
        return
    if not stdin.isatty():
        raise UserFacingError(f"{question} Add --yes to confirm (there is no terminal to ask in).")
    print(f"{question} [y/N] ", end="", file=out, flush=True)
    if stdin.readline().strip().lower() not in ("y", "yes"):
        raise UserFacingError("Not confirmed: nothing was changed.")
