"""Every knowledge base of a store (rag/store.py) as plain files, and back, through the store's port.

What a server backup archives (rag/backup.py packs the folder): `export.json` lists the knowledge
bases; each has a folder with its chunks and its document manifest, each as `<kind>.jsonl` (one
record a line: id, document, metadata) beside `<kind>.f32` (its vectors, float32 little-endian, row
after row).

A server has other writers: workers ingest while the export runs. A knowledge base is therefore read as
its manifest says at the start: only chunks of the versions it names as active are kept (an ingest
under way has written chunks of a version no manifest names yet), and each document's chunks must
all be there. When one is short (its document was replaced or deleted meanwhile, so its old chunks
went), the knowledge base is read again, a bounded number of times. So an export never holds a
half-written document, nor a manifest entry without its chunks.

Loading replaces what a knowledge base holds the way an ingest replaces a document (VectorStore.load):
a load stopped midway leaves each document whole, old or restored, and can be run again.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from rag.errors import UserFacingError
from rag.store import Records, VectorStore

log = structlog.get_logger(__name__)

EXPORT_FORMAT = 1
INDEX = "export.json"
PAGE = 1000  # records per read and per write
TRIES = 5  # reads of one knowledge base before a backup gives up on it
_KINDS = ("chunks", "manifest")
_VECTOR = np.dtype("<f4")

# Called between two pages of a knowledge base's chunks (kb, try, page): tests interleave writes here.
BetweenPages = Callable[[str, int, int], None]


class ExportError(UserFacingError):
    """An export or a load could not be done; the message says why and what was (not) changed."""


@dataclass(frozen=True)
class ExportSummary:
    knowledge_bases: int
    documents: int
    chunks: int
    rereads: int  # knowledge bases read again because a document changed meanwhile


# -- export -----------------------------------------------------------------------------------------
def export_store(
    store: VectorStore,
    *,
    folder: Path,
    page: int = PAGE,
    tries: int = TRIES,
    between_pages: BetweenPages | None = None,
) -> ExportSummary:
    """Write every knowledge base of `store` into `folder` (empty or new)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries, rereads = [], 0
    for n, kb in enumerate(store.knowledge_bases()):
        where = folder / f"kb-{n:04d}"
        for attempt in range(1, tries + 1):
            entry = _export_kb(store, kb, where, page=page, attempt=attempt, hook=between_pages)
            if entry is not None:
                entries.append(entry)
                break
            rereads += 1
            log.info("export_reread", kb=kb, attempt=attempt)
        else:
            raise ExportError(
                f"The knowledge base {kb} changed during each of {tries} reads (documents were being "
                "replaced or deleted the whole time), so no backup was written. Run it again when "
                "fewer uploads are under way."
            )
    index = {"format": EXPORT_FORMAT, "knowledge_bases": entries}
    (folder / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True))
    return _summary(entries, rereads)


def _summary(entries: list[dict[str, Any]], rereads: int) -> ExportSummary:
    return ExportSummary(
        knowledge_bases=len(entries),
        documents=sum(e["documents"] for e in entries),
        chunks=sum(e["chunks"] for e in entries),
        rereads=rereads,
    )


def _export_kb(
    store: VectorStore, kb: str, where: Path, *, page: int, attempt: int, hook: BetweenPages | None
) -> dict[str, Any] | None:
    """One read of a knowledge base; None when a document changed meanwhile (read it again)."""
    where.mkdir(parents=True, exist_ok=True)
    docs = _Writer(where, "manifest")
    chunks = _Writer(where, "chunks")
    try:
        manifest, metadata = store.manifest_records(kb)
        listed = docs.write(manifest)
        expected = {str(m["version"]): int(m["chunks"]) for m in listed}
        found: Counter[str] = Counter()
        for number, records in enumerate(store.chunk_records(kb, page=page)):
            written = chunks.write(records, keep=lambda meta: str(meta.get("version")) in expected)
            found.update(str(m["version"]) for m in written)
            if hook is not None:
                hook(kb, attempt, number)
    finally:
        docs.close()
        chunks.close()
    if found != Counter({v: n for v, n in expected.items() if n}):
        return None
    return {
        "kb": kb,
        "folder": where.name,
        "documents": docs.count,
        "chunks": chunks.count,
        "collections": {"manifest": docs.spec(metadata), "chunks": chunks.spec({})},
    }


class _Writer:
    """Records into `<name>.jsonl` and their vectors into `<name>.f32`."""

    def __init__(self, folder: Path, name: str) -> None:
        self._records = (folder / f"{name}.jsonl").open("w", encoding="utf-8")
        self._vectors = (folder / f"{name}.f32").open("wb")
        self._seen: set[str] = set()
        self.count = 0
        self.dim = 0

    def write(
        self, records: Records, *, keep: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> list[dict[str, Any]]:
        """Append the records `keep` accepts and that are not already written; returns their metadata."""
        written = []
        rows = zip(records.ids, records.vectors, records.texts, records.metadatas, strict=True)
        for cid, vector, text, meta in rows:
            if cid in self._seen or not keep(meta):
                continue
            self._seen.add(cid)
            row = np.asarray(vector, dtype=_VECTOR)
            self.dim = self.dim or len(row)
            self._records.write(json.dumps({"id": cid, "document": text, "metadata": meta}) + "\n")
            self._vectors.write(row.tobytes())
            written.append(meta)
        self.count += len(written)
        return written

    def close(self) -> None:
        self._records.close()
        self._vectors.close()

    def spec(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return {"count": self.count, "dim": self.dim, "metadata": metadata}


# -- load -------------------------------------------------------------------------------------------
def read_index(folder: Path) -> dict[str, Any]:
    """The export's index, checked against its files: every count, every vector, every document whole."""
    try:
        loaded = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"its {INDEX} is missing or damaged ({exc})") from None
    if not isinstance(loaded, dict):
        raise ExportError(f"its {INDEX} is damaged (not an object)")
    index: dict[str, Any] = loaded
    if index.get("format") != EXPORT_FORMAT or not isinstance(index.get("knowledge_bases"), list):
        raise ExportError(f"its {INDEX} is in format {index.get('format')!r}; this version reads 1")
    for entry in index["knowledge_bases"]:
        try:
            whole = _whole(folder, entry)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExportError(f"its export is damaged ({type(exc).__name__}: {exc})") from None
        if not whole:
            raise ExportError(f"the knowledge base {entry['kb']} in it is not whole (chunks do not match)")
    return index


def _whole(folder: Path, entry: dict[str, Any]) -> bool:
    """Whether each document of a knowledge base in an export has exactly the chunks it promises."""
    if not re.fullmatch(r"kb-\d{4}", str(entry["folder"])):
        raise ValueError(f"folder {entry['folder']!r}")
    versions: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    for kind in _KINDS:
        for rows in _read(folder / entry["folder"], kind, entry["collections"][kind], page=PAGE):
            for meta in rows.metadatas:
                if kind == "chunks":
                    versions[str(meta["version"])] += 1
                else:
                    expected[str(meta["version"])] = int(meta["chunks"])
    return versions == Counter({v: n for v, n in expected.items() if n})


def load_store(store: VectorStore, *, folder: Path, index: dict[str, Any]) -> ExportSummary:
    """Make the knowledge bases of `store` hold what the export in `folder` holds; knowledge bases it
    does not have are emptied. `index`: from read_index (checked)."""
    entries = index["knowledge_bases"]
    present = {e["kb"] for e in entries}
    others = [kb for kb in store.knowledge_bases() if kb not in present]
    done: list[str] = []
    for kb, entry in [*((e["kb"], e) for e in entries), *((kb, None) for kb in others)]:
        try:
            _load_kb(store, kb, folder, entry)
        except Exception as exc:
            restored = f"{len(done)} of {len(entries) + len(others)} knowledge bases were done"
            raise ExportError(
                f"The restore stopped at the knowledge base {kb} ({type(exc).__name__}: {exc}); "
                f"{restored}. Every document is whole, in its old or its restored version; run the same "
                "restore again to finish it."
            ) from exc
        done.append(kb)
        log.info("knowledge_base_restored", kb=kb, emptied=entry is None)
    return _summary(entries, 0)


def _load_kb(store: VectorStore, kb: str, folder: Path, entry: dict[str, Any] | None) -> None:
    if entry is None:
        store.load(kb, chunks=(), manifest=(), metadata={})
        return
    where, specs = folder / entry["folder"], entry["collections"]
    store.load(
        kb,
        chunks=_read(where, "chunks", specs["chunks"], page=PAGE),
        manifest=_read(where, "manifest", specs["manifest"], page=PAGE),
        metadata=specs["manifest"]["metadata"],
    )


def _read(folder: Path, kind: str, spec: dict[str, Any], *, page: int) -> Iterator[Records]:
    """A kind's records from its files, `page` at a time."""
    count, dim = int(spec["count"]), int(spec["dim"])
    if count == 0:
        return
    path = folder / f"{kind}.f32"
    if path.stat().st_size != count * dim * _VECTOR.itemsize:
        raise ExportError(f"{folder.name}/{path.name} does not hold {count} vectors of {dim} values")
    vectors = np.memmap(path, dtype=_VECTOR, mode="r", shape=(count, dim))
    done = 0
    with (folder / f"{kind}.jsonl").open(encoding="utf-8") as lines:
        while part := [json.loads(line) for line in itertools.islice(lines, page)]:
            if done + len(part) > count:
                break
            yield Records(
                ids=[r["id"] for r in part],
                vectors=np.array(vectors[done : done + len(part)]),
                texts=[r["document"] if kind == "chunks" else None for r in part],
                metadatas=[r["metadata"] for r in part],
            )
            done += len(part)
    if done != count:
        raise ExportError(f"{folder.name}/{kind}.jsonl does not hold {count} records")
