"""The `threadwise` sub-commands, in the order `threadwise --help` lists them. Each module registers its
own sub-parser (bot/commands/base.py) and runs it; the heavy imports wait until it runs."""

from bot.commands import (
    ask,
    backup,
    chat,
    check,
    docs,
    evaluate,
    feedback,
    forget,
    ingest,
    serve,
    stats,
    worker,
)

COMMANDS = (serve, worker, chat, ingest, ask, docs, forget, backup, stats, feedback, check, evaluate)
