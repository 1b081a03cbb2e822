"""`threadwise ingest PATH…`: files and folders into a knowledge base, with a progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from rag.engine import Engine
from rag.errors import UserFacingError
from rag.extract import SUPPORTED_EXTENSIONS
from rag.types import IngestResult


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


async def ingest_paths(engine: Engine, kb: str, paths: Sequence[Path], *, uploader: str) -> int:
    files = collect(paths)
    started = time.perf_counter()
    results: list[IngestResult] = []
    failures = 0
    bar = tqdm(files, unit="doc", disable=None, file=sys.stderr)
    for name, path in bar:
        bar.set_description(name[-40:])

        def progress(done: int, total: int) -> None:
            bar.set_postfix_str(f"{done}/{total} chunks", refresh=True)

        try:
            result = await engine.ingest(kb, name, path.read_bytes(), uploader=uploader, progress=progress)
            results.append(result)
        except UserFacingError as exc:
            failures += 1
            bar.write(f"skipped: {exc.message}")
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
