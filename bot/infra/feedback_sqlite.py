"""The FeedbackBook of one machine: a SQLite file (FEEDBACK_PATH) that `threadwise serve`, its
workers on the same machine and `threadwise feedback` share. Several machines share Redis instead."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from bot.core.feedback import VOTE_TTL_S, AnswerNote, VoteRecord, merged

BUSY_TIMEOUT_S = 10.0  # how long a call waits for another process's write to finish

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, at REAL NOT NULL, note TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS notes_at ON notes (at);
CREATE TABLE IF NOT EXISTS votes (
  key TEXT PRIMARY KEY, at REAL NOT NULL, kb TEXT NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS votes_at ON votes (at);
"""


class SqliteFeedbackBook:
    def __init__(
        self, path: Path, *, ttl: float = VOTE_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        self._path = path
        self._ttl = ttl
        self._clock = clock
        self._made = False  # the file and its tables, at the first call: building one creates nothing

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection per call: calls come from worker threads, and from other processes too."""
        if not self._made:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            if not self._made:
                db.executescript(_SCHEMA)
                self._made = True
            yield db
        finally:
            db.close()

    async def note(self, platform: str, refs: Sequence[str], note: AnswerNote) -> None:
        await asyncio.to_thread(self._note, platform, refs, note)

    def _note(self, platform: str, refs: Sequence[str], note: AnswerNote) -> None:
        now, text = self._clock(), json.dumps(asdict(note))
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO notes (key, at, note) VALUES (?, ?, ?)",
                [(f"{platform}:{ref}", now, text) for ref in refs],
            )
            db.execute("DELETE FROM notes WHERE at < ?", (now - self._ttl,))
            db.execute("COMMIT")

    async def noted(self, platform: str, ref: str) -> AnswerNote | None:
        row = await asyncio.to_thread(self._one, "SELECT note FROM notes WHERE key = ?", f"{platform}:{ref}")
        return AnswerNote.from_dict(json.loads(row)) if row else None

    async def cast(self, record: VoteRecord) -> VoteRecord | None:
        return await asyncio.to_thread(self._cast, record)

    def _cast(self, record: VoteRecord) -> VoteRecord | None:
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # no other cast between the read and the write
            db.execute("DELETE FROM votes WHERE at < ?", (self._clock() - self._ttl,))
            row = db.execute("SELECT record FROM votes WHERE key = ?", (record.key,)).fetchone()
            previous = VoteRecord.from_dict(json.loads(row[0])) if row else None
            kept = merged(previous, record)
            db.execute(
                "INSERT OR REPLACE INTO votes (key, at, kb, record) VALUES (?, ?, ?, ?)",
                (kept.key, kept.at, kept.kb, json.dumps(kept.to_dict())),
            )
            db.execute("COMMIT")
        return previous

    async def votes(self, *, since: float, kb: str | None = None) -> list[VoteRecord]:
        def read() -> list[VoteRecord]:
            query = "SELECT record FROM votes WHERE at >= ? AND (? IS NULL OR kb = ?) ORDER BY at DESC"
            with self._db() as db:
                rows = db.execute(query, (since, kb, kb)).fetchall()
            return [VoteRecord.from_dict(json.loads(r[0])) for r in rows]

        return await asyncio.to_thread(read)

    def _one(self, query: str, key: str) -> str | None:
        with self._db() as db:
            row = db.execute(query, (key,)).fetchone()
        return str(row[0]) if row else None
