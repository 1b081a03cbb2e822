"""The `threadwise` command: reads Settings, configures logging, and runs one sub-command
(bot/commands/), which asks the composition root (bot/compose/) for what it runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from bot.commands import COMMANDS
from bot.logsetup import configure_logging
from bot.settings import Settings, load_settings
from rag.errors import ConfigError, UserFacingError
from rag.redact import redact


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threadwise", description="A Slack and Teams knowledge bot.")
    parser.set_defaults(login=os.environ.get("USER", "cli"))  # who runs the command (`ingest`'s uploader)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = load_settings()
        # What a person reads at the terminal: routine INFO lines would drown it.
        quiet = args.terminal and "log_level" not in settings.model_fields_set
        configure_logging(
            level="WARNING" if quiet else settings.log_level,
            fmt=settings.log_format,
            file=settings.log_file,
            max_bytes=settings.log_max_bytes,
            backup_count=settings.log_backup_count,
        )
        code: int = asyncio.run(args.run(args, settings))
        return code
    except ConfigError as exc:
        print(f"threadwise: {redact(str(exc))}", file=sys.stderr)
        return 2
    except UserFacingError as exc:
        print(f"threadwise: {redact(exc.message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a full disk, a folder not ours, a service down: one line, no traceback
        return _failed(exc, settings)


def _failed(exc: Exception, settings: Settings | None) -> int:
    from bot.commands.failures import describe, unexpected

    line = describe(exc, settings)
    if line is None:
        logging.getLogger(__name__).debug("unexpected error", exc_info=exc)
        line = unexpected(exc)
    print(f"threadwise: {line}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
