"""The `threadwise` command: the composition root that reads Settings and runs one sub-command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.logsetup import configure_logging
from bot.settings import Settings, load_settings
from rag.errors import ConfigError, UserFacingError
from rag.redact import redact

LOCAL_KB = "local"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threadwise", description="A Slack and Teams knowledge bot.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_kb(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--kb", default=LOCAL_KB, help="knowledge base id (default: local)")
        return p

    sub.add_parser("serve", help="run the HTTP service (platform routes, /health, /ready, /metrics)")
    sub.add_parser("worker", help="run queued jobs (RUNNER=queue: serve enqueues them on REDIS_URL)")
    with_kb(sub.add_parser("chat", help="talk to the bot in this terminal"))
    ingest = with_kb(sub.add_parser("ingest", help="add files or folders to a knowledge base"))
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument(
        "--uploader",
        default=None,
        metavar="ID",
        help="who uploaded the files (default: your login name; a replaced document keeps its own)",
    )
    ask = with_kb(sub.add_parser("ask", help="answer one question"))
    ask.add_argument("question")
    docs = with_kb(sub.add_parser("docs", help="list the documents of a knowledge base"))
    docs.add_argument(
        "--verbose", action="store_true", help="also show what each document says about itself (its identity)"
    )
    forget = sub.add_parser(
        "forget", help="delete a document, everything a user uploaded (--user), or a knowledge base (--kb)"
    )
    forget.add_argument("name", nargs="?", help="the document to delete (in --kb, default: local)")
    forget.add_argument("--kb", default=None, help="knowledge base; alone: drop this whole knowledge base")
    forget.add_argument("--user", default=None, metavar="ID", help="every document this user uploaded")
    forget.add_argument("--all-kbs", action="store_true", help="with --user: in every KB (the default)")
    forget.add_argument("--yes", action="store_true", help="do not ask before deleting many documents")
    sub.add_parser(
        "backup", help="archive every knowledge base (embedded or CHROMA_HOST) into BACKUP_DIR (.tar.gz)"
    )
    restore = sub.add_parser("restore", help="replace every knowledge base with those of a backup archive")
    restore.add_argument("file", metavar="FILE")
    restore.add_argument("--yes", action="store_true", help="do not ask before replacing the store")
    stats = sub.add_parser("stats", help="documents and passages per knowledge base")
    stats.add_argument("--kb", default=None, help="only this knowledge base (default: all)")
    sub.add_parser("check", help="try each configured dependency (Slack, Teams, Groq, Chroma, Redis, model)")
    evaluate = sub.add_parser("eval", help="measure retrieval on a QA set (recall@k, MRR)")
    evaluate.add_argument("qa", metavar="QA.jsonl")
    evaluate.add_argument("--docs", required=True, help="folder of the documents the questions are about")
    evaluate.add_argument("--mode", choices=["hybrid", "vector", "both"], default="both")
    evaluate.add_argument("--limit", type=int, default=0, help="only the first N questions")
    evaluate.add_argument(
        "--kb", default="eval-scratch", help="scratch knowledge base (re-used if unchanged)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = load_settings()
        # The terminal chat is for reading answers: routine INFO lines would drown them.
        terminal = {"chat", "ask", "docs", "stats", "check"}
        quiet = args.command in terminal and "log_level" not in settings.model_fields_set
        configure_logging(
            level="WARNING" if quiet else settings.log_level,
            fmt=settings.log_format,
            file=settings.log_file,
            max_bytes=settings.log_max_bytes,
            backup_count=settings.log_backup_count,
        )
        return asyncio.run(_run(args, settings))
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
    from bot.failures import describe, unexpected

    line = describe(exc, settings)
    if line is None:
        logging.getLogger(__name__).debug("unexpected error", exc_info=exc)
        line = unexpected(exc)
    print(f"threadwise: {line}", file=sys.stderr)
    return 1


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import CollectorRegistry

    from bot.compose import build_engine
    from bot.metrics import Metrics

    if args.command == "check":  # before opening anything: the check says what fails to open
        from bot.check import run_check

        return await run_check(settings, out=sys.stdout)
    if args.command in {"backup", "restore"}:  # the store's files, without opening Chroma
        from bot.backup_cli import run_backup, run_restore

        if args.command == "backup":
            return await run_backup(settings, out=sys.stdout)
        return await run_restore(settings, Path(args.file), yes=args.yes, stdin=sys.stdin, out=sys.stdout)
    if args.command == "worker":  # builds its own engine, once arq has connected to Redis
        from bot.worker import run_worker

        if not settings.redis_url:
            raise ConfigError("threadwise worker needs REDIS_URL: the Redis `threadwise serve` queues on")
        return await run_worker(settings)
    metrics = Metrics(registry=CollectorRegistry())  # this process's, exported at /metrics by `serve`
    engine = build_engine(settings, stage_observer=metrics.stage)
    if args.command in {"serve", "chat", "ingest"}:
        await engine.sweep()
    if args.command == "serve":
        from bot.serve_cli import run_serve

        return await run_serve(settings, engine, metrics=metrics)
    if args.command == "chat":
        from bot.console.chat import run_chat

        return await run_chat(settings, engine, kb=args.kb)
    if args.command == "ingest":
        from bot.ingest_cli import ingest_paths

        paths = [Path(p) for p in args.paths]
        uploader = args.uploader or os.environ.get("USER", "cli")
        return await ingest_paths(engine, args.kb, paths, uploader=uploader, claim=args.uploader is not None)
    if args.command == "ask":
        from bot.console.sender import markdown_to_plain
        from bot.core.text import sources_markdown

        answer = await engine.ask(args.kb, args.question)
        print(markdown_to_plain(answer.text))
        if answer.citations:
            print("\n" + markdown_to_plain(sources_markdown(answer.citations)))
        return 0 if answer.mode != "not_found" else 1
    if args.command == "docs":
        from bot.console.sender import markdown_to_plain
        from bot.core.text import documents_list

        identities = await engine.identities(args.kb) if args.verbose else None
        print(markdown_to_plain(documents_list(await engine.documents(args.kb), identities)))
        return 0
    if args.command == "forget":
        from bot.forget_cli import ForgetRequest, run_forget

        request = ForgetRequest(args.name, args.kb, args.user, args.all_kbs, args.yes)
        note = (
            "Backups taken before now still hold it until they are older than "
            f"BACKUP_RETENTION_DAYS ({settings.backup_retention_days}); restoring one brings it back."
        )
        return await run_forget(engine, request, backups_note=note, stdin=sys.stdin, out=sys.stdout)
    if args.command == "stats":
        from bot.stats_cli import run_stats

        if settings.runner != "queue" or not settings.redis_url:
            return await run_stats(engine, kb=args.kb, out=sys.stdout)
        from redis.asyncio import Redis

        from bot.jobqueue import QueueRunner

        async with Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5) as redis:
            depth = QueueRunner.sharing(redis).depth
            return await run_stats(engine, kb=args.kb, out=sys.stdout, queue_depth=depth)
    if args.command == "eval":
        from bot.evaluate import run_eval

        return await run_eval(
            engine, Path(args.qa), Path(args.docs), kb=args.kb, mode=args.mode, limit=args.limit
        )
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
