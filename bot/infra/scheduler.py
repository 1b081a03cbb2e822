"""Scheduled backups of the embedded store, inside `threadwise serve` (the one process that holds it).

The scheduler only submits: on BACKUP_SCHEDULE its job starts a backup as a task of this process and
returns. So shutting the scheduler down never cuts a copy short, and `stop()` lets a running backup
finish. SIGUSR1 asks for a backup now (`threadwise backup` says so when the store is in use).
With CHROMA_HOST the data lives in the Chroma server and nothing is scheduled here.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import datetime
from pathlib import Path

import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.cron import cron_trigger
from bot.settings import Settings
from rag.backup import BackupResult, newest_backup, snapshot
from rag.engine import Engine

log = structlog.get_logger(__name__)


class BackupScheduler:
    def __init__(
        self, *, engine: Engine, trigger: CronTrigger, source: Path, backup_dir: Path, retention_days: int
    ) -> None:
        self._engine = engine
        self._trigger = trigger
        self._source = source
        self._backup_dir = backup_dir
        self._retention_days = retention_days
        # A run missed while the process was busy or asleep still happens, once, within the hour.
        self._scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
        )
        self._running: asyncio.Task[BackupResult | None] | None = None
        self._started = False
        self.last: BackupResult | None = None
        self._newest: float | None = None  # Unix time of the newest archive, read once at start

    @property
    def next_run(self) -> datetime | None:
        """When the next scheduled backup starts; None when stopped."""
        job = self._scheduler.get_job("backup") if self._started else None
        return job.next_run_time if job is not None else None

    async def last_success(self) -> float | None:
        """Unix time of the newest backup: this process's last, else the newest archive in BACKUP_DIR
        when it started (a restart does not forget yesterday's); None when there is none."""
        if self.last is not None:
            return self.last.backup.taken_at.timestamp()
        return self._newest

    def start(self) -> None:
        """Start on the running event loop."""
        newest = newest_backup(self._backup_dir)
        self._newest = newest.timestamp() if newest else None
        job = self._scheduler.add_job(self._submit, self._trigger, id="backup", name="backup")
        self._scheduler.start()
        self._started = True
        log.info("backups_scheduled", backup_dir=str(self._backup_dir), next_run=str(job.next_run_time))

    async def _submit(self) -> None:
        self.backup_now()

    def backup_now(self) -> asyncio.Task[BackupResult | None]:
        """Start a backup unless one is running; either way, the task of the current one."""
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._backup())
        return self._running

    async def _backup(self) -> BackupResult | None:
        try:
            result = await snapshot(
                self._engine,
                source=self._source,
                backup_dir=self._backup_dir,
                retention_days=self._retention_days,
            )
        except Exception:  # logged with its traceback; the next scheduled run tries again
            log.exception("backup_failed", backup_dir=str(self._backup_dir))
            return None
        self.last = result
        log.info(
            "backup_taken",
            path=str(result.backup.path),
            data_bytes=result.backup.data_bytes,
            seconds=round(result.seconds, 2),
            writes_held_seconds=round(result.held_seconds, 2),
            removed=[p.name for p in result.removed],
        )
        return result

    async def stop(self) -> None:
        """No more runs; a backup under way is finished first."""
        if self._started:
            self._started = False
            self._scheduler.shutdown(wait=False)
        if self._running is not None and not self._running.done():
            await asyncio.wait([self._running])


def attach_backups(app: web.Application, *, settings: Settings, engine: Engine) -> BackupScheduler | None:
    """Run scheduled backups while `app` serves; None when the store is a Chroma server."""
    if settings.chroma_host:
        log.info("backups_not_scheduled", reason="CHROMA_HOST is set: back up the Chroma server's volume")
        return None
    scheduler = BackupScheduler(
        engine=engine,
        trigger=cron_trigger(settings.backup_schedule),
        source=Path(settings.chroma_persist_directory),
        backup_dir=Path(settings.backup_dir),
        retention_days=settings.backup_retention_days,
    )

    async def start(_: web.Application) -> None:
        scheduler.start()
        with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGUSR1 on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, scheduler.backup_now)

    async def stop(_: web.Application) -> None:
        with contextlib.suppress(NotImplementedError, AttributeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        await scheduler.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return scheduler
