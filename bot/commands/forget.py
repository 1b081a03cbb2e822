"""`threadwise forget`: one document, everything a person uploaded, or a whole knowledge base.

    threadwise forget NAME [--kb KB]              one document (KB default: local)
    threadwise forget --user ID [--kb KB]         every document ID uploaded (default: in every KB)
    threadwise forget --kb KB                     the knowledge base itself

The last two ask first (or need --yes) and print what they removed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TextIO

from bot.commands.base import SubParsers, add, open_engine
from bot.commands.confirm import confirm
from bot.core.text import plural
from bot.settings import Settings
from rag.engine import Engine
from rag.errors import UserFacingError
from rag.types import DocumentInfo

LOCAL_KB = "local"


def register(sub: SubParsers) -> None:
    help = "delete a document, everything a user uploaded (--user), or a knowledge base (--kb)"
    parser = add(sub, "forget", run, help=help)
    parser.add_argument("name", nargs="?", help="the document to delete (in --kb, default: local)")
    parser.add_argument("--kb", default=None, help="knowledge base; alone: drop this whole knowledge base")
    parser.add_argument("--user", default=None, metavar="ID", help="every document this user uploaded")
    parser.add_argument("--all-kbs", action="store_true", help="with --user: in every KB (the default)")
    parser.add_argument("--yes", action="store_true", help="do not ask before deleting many documents")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    request = ForgetRequest(args.name, args.kb, args.user, args.all_kbs, args.yes)
    note = (
        "Backups taken before now still hold it until they are older than "
        f"BACKUP_RETENTION_DAYS ({settings.backup_retention_days}); restoring one brings it back."
    )
    engine = await open_engine(settings)
    return await run_forget(engine, request, backups_note=note, stdin=sys.stdin, out=sys.stdout)


@dataclass(frozen=True)
class ForgetRequest:
    name: str | None
    kb: str | None
    user: str | None
    all_kbs: bool
    yes: bool


async def run_forget(
    engine: Engine, request: ForgetRequest, *, backups_note: str | None, stdin: TextIO, out: TextIO
) -> int:
    if request.name is not None and request.user is not None:
        raise UserFacingError("Give a document NAME or --user ID, not both.")
    if request.all_kbs and (request.user is None or request.kb is not None):
        raise UserFacingError("--all-kbs goes with --user ID, and instead of --kb.")
    if request.name is not None:
        kb = request.kb or LOCAL_KB
        info = await engine.forget(kb, request.name)
        print(f"Deleted {info.name} ({plural(info.chunks, 'passage')}) from {kb}.", file=out)
        return 0
    if request.user is not None:
        removed = await _forget_user(engine, request, stdin=stdin, out=out)
    elif request.kb is not None:
        removed = await _drop(engine, request.kb, yes=request.yes, stdin=stdin, out=out)
    else:
        raise UserFacingError(
            "Say what to delete: a document NAME, --user ID (everything that person uploaded) or "
            "--kb KB alone (a whole knowledge base)."
        )
    if removed and backups_note:
        print(backups_note, file=out)
    return 0


async def _forget_user(engine: Engine, request: ForgetRequest, *, stdin: TextIO, out: TextIO) -> bool:
    user = str(request.user)
    kbs = [request.kb] if request.kb else await engine.knowledge_bases()
    where = request.kb or f"any knowledge base ({', '.join(kbs) or 'there are none'})"
    found = {kb: [d for d in await engine.documents(kb) if d.uploader == user] for kb in kbs}
    found = {kb: docs for kb, docs in found.items() if docs}
    if not found:
        print(f"No documents uploaded by {user} in {where}: nothing to delete.", file=out)
        return False
    count = sum(len(docs) for docs in found.values())
    for kb, docs in found.items():
        print(f"{kb}: {_names(docs)}", file=out)
    question = f"Delete these {plural(count, 'document')} uploaded by {user}?"
    confirm(question, yes=request.yes, stdin=stdin, out=out)
    removed = {kb: await engine.forget_uploads(kb, user) for kb in found}
    docs = [d for kb_docs in removed.values() for d in kb_docs]
    passages = sum(d.chunks for d in docs)
    print(
        f"Deleted {plural(len(docs), 'document')} ({plural(passages, 'passage')}) uploaded by {user}:",
        file=out,
    )
    for kb, kb_docs in removed.items():
        if kb_docs:
            print(f"  {kb}: {_names(kb_docs)}", file=out)
    return bool(docs)


async def _drop(engine: Engine, kb: str, *, yes: bool, stdin: TextIO, out: TextIO) -> bool:
    kbs = await engine.knowledge_bases()
    if kb not in kbs:
        raise UserFacingError(
            f"There is no knowledge base called {kb}. Knowledge bases: {', '.join(kbs) or 'none'}."
        )
    held = await engine.stats(kb)
    what = f"{plural(held.documents, 'document')}, {plural(held.chunks, 'passage')}"
    confirm(f"Drop the knowledge base {kb} ({what})?", yes=yes, stdin=stdin, out=out)
    dropped = await engine.drop(kb)
    print(
        f"Dropped the knowledge base {kb}: {plural(dropped.documents, 'document')} and "
        f"{plural(dropped.chunks, 'passage')} deleted.",
        file=out,
    )
    return True


def _names(docs: list[DocumentInfo]) -> str:
    return ", ".join(d.name for d in docs)
