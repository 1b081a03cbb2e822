"""`threadwise ingest PATH…`: files and folders into a knowledge base, with a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from bot.commands.base import SubParsers, add, open_engine, scope_argument, with_kb
from bot.settings import Settings
from rag.engine import Engine
from rag.errors import UserFacingError
from rag.extract import SUPPORTED_EXTENSIONS
from rag.types import IngestResult, Upload


def register(sub: SubParsers) -> None:
    parser = with_kb(add(sub, "ingest", run, help="add files or folders to a knowledge base"))
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument(
        "--uploader",
        default=None,
        metavar="ID",
        help="who uploaded the files (default: your login name; a replaced document keeps its own)",
    )
    parser.add_argument(
        "--scope",
        type=scope_argument,
        default=None,
        metavar="SCOPE",
        help="who may see them: workspace, channel:ID or private:USER (default: new documents the "
        "workspace; a document already there keeps its own, and the same file with another scope "
        "changes only that)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    engine = await open_engine(settings, sweep=True)
    paths = [Path(p) for p in args.paths]
    # A document kept private to someone is theirs to replace and delete, unless --uploader says otherwise.
    owner = args.scope.partition(":")[2] if args.scope and args.scope.startswith("private:") else None
    uploader = args.uploader or owner or args.login
    claim = args.uploader is not None or owner is not None
    return await ingest_paths(engine, args.kb, paths, uploader=uploader, claim=claim, scope=args.scope)


def collect(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(document name, file) pairs: a file keeps its name, a folder's files their path inside it."""
    found: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if file.suffix.lower().lstrip(".") in SUPPORTED_EXTENSIONS:
                    found.append((file.relative_to(path).as_posix(), file))
        elif path.is_file():
            found.append((path.name, path))
        else:
            raise UserFacingError(f"{path}: no such file or folder.")
    return found


async def ingest_paths(
    engine: Engine,
    kb: str,
    paths: Sequence[Path],
    *,
    uploader: str,
    claim: bool = False,
    scope: str | None = None,
) -> int:
    """Every file into `kb`, several files' chunks embedded together (Engine.ingest_many).

    The operator is trusted: a file replaces a document of its name whoever uploaded it. A new
    document is `uploader`'s; a replaced one keeps its uploader (what `forget --user` and the chat's
    ownership go by) unless `claim` (an explicit `--uploader`) gives it to `uploader`.
    """
    files = collect(paths)
    started = time.perf_counter()
    results: list[IngestResult] = []
    failures = 0
    bar = tqdm(total=len(files), unit="doc", disable=None, file=sys.stderr)

    def uploads() -> Iterator[Upload]:
        nonlocal failures
        for name, path in files:
            bar.set_description(name[-40:])
            try:
                data = path.read_bytes()
            except OSError as exc:
                failures += 1
                bar.update()
                bar.write(f"skipped: {name}: {exc.strerror or exc}", file=sys.stderr)
                continue
            yield Upload(name, data, uploader=uploader, trusted=True, claim=claim, scope=scope)

    def progress(done: int, total: int) -> None:
        bar.set_postfix_str(f"embedding {done}/{total} chunks", refresh=True)

    def done(outcome: IngestResult | UserFacingError) -> None:
        nonlocal failures
        bar.update()
        if isinstance(outcome, UserFacingError):
            failures += 1
            bar.write(f"skipped: {outcome.message}", file=sys.stderr)
        else:
            results.append(outcome)

    try:
        await engine.ingest_many(kb, uploads(), progress=progress, on_result=done)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    changed = [r for r in results if r.status != "unchanged"]
    chunks = sum(r.chunks for r in changed)
    unchanged = len(results) - len(changed)
    print(
        f"{kb}: {len(changed)} documents ingested ({unchanged} unchanged, {failures} failed), "
        f"{chunks} chunks, {seconds:.1f} s"
        + (f", {chunks / seconds:.1f} chunks/s" if changed and seconds > 0 else "")
    )
    return 1 if failures else 0
