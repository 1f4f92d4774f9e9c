"""Periodic jobs with no single process to lose.

Recovery (the sweep) must not hang on one Celery beat: a deployment that started its workers without
`--beat`, or lost the one beat it had, would leave a killed worker's messages pending for good, and
nothing would say so. Instead every worker that consumes the `timers` queue runs this loop in a
thread. Each job has a row in `periodic_jobs`; a worker runs a job only when it is due (its last run
finished `interval` ago, by whichever worker) and it can take the row: a short lease (`held_until`)
taken with a conditional UPDATE, which works alike on PostgreSQL and SQLite. So a job runs once per
interval across the deployment, one run at a time, and if the worker running it dies its lease
expires and the next worker's loop takes over. `last_run_at` is what `/readyz` reads to say that no
sweep has run lately.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.db import is_postgres, read_scope, session_scope
from shared.models import PeriodicJob, as_utc, utcnow

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    interval: float  # seconds between the end of one run and the start of the next, deployment-wide
    run: Callable[[], object]
    hold: float = 300.0  # how long a run may take before another worker may start it again


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def take(url: str, job: Job, holder: str) -> bool:
    """Take the job if it is due and nobody holds it (or their hold has expired)."""
    now = utcnow()
    with session_scope(url) as session:
        values = {"name": job.name, "holder": None, "held_until": None, "last_run_at": None, "last_holder": None}
        insert = pg_insert if is_postgres(session) else sqlite_insert
        session.execute(insert(PeriodicJob).values(**values).on_conflict_do_nothing(index_elements=["name"]))
        taken = session.execute(
            update(PeriodicJob)
            .where(PeriodicJob.name == job.name,
                   or_(PeriodicJob.held_until.is_(None), PeriodicJob.held_until < now),
                   or_(PeriodicJob.last_run_at.is_(None),
                       PeriodicJob.last_run_at <= now - timedelta(seconds=job.interval)))
            .values(holder=holder, held_until=now + timedelta(seconds=job.hold))
        ).rowcount
    return bool(taken)


def finish(url: str, job: Job, holder: str, succeeded: bool = True) -> None:
    """Give the job back. A run that failed does not count as a run (so `/readyz` sees it); nobody
    tries again for one interval, so a broken job is not retried in a tight loop by every worker."""
    now = utcnow()
    values = ({"holder": None, "held_until": None, "last_run_at": now, "last_holder": holder} if succeeded
              else {"holder": None, "held_until": now + timedelta(seconds=job.interval)})
    with session_scope(url) as session:
        session.execute(update(PeriodicJob).where(PeriodicJob.name == job.name, PeriodicJob.holder == holder)
                        .values(**values))


def last_run(url: str, name: str) -> tuple[datetime | None, str | None]:
    """When the job last finished, and where."""
    with read_scope(url) as session:
        row = session.execute(select(PeriodicJob.last_run_at, PeriodicJob.last_holder)
                              .where(PeriodicJob.name == name)).one_or_none()
    if row is None or row.last_run_at is None:
        return None, None
    return as_utc(row.last_run_at), row.last_holder


class PeriodicRunner(threading.Thread):
    """The loop every timers worker runs: each tick, every due job it can take, run here."""

    def __init__(self, url: str, jobs: list[Job], tick: float = 1.0, holder: str | None = None) -> None:
        super().__init__(name="lexdesk-periodic", daemon=True)
        self.url = url
        self.jobs = jobs
        self.tick = tick
        self.holder = holder or this_process()
        self.stopping = threading.Event()

    def run(self) -> None:
        log.info("periodic_runner_started", holder=self.holder, jobs=[job.name for job in self.jobs])
        while not self.stopping.wait(self.tick):
            for job in self.jobs:
                self.run_if_due(job)

    def run_if_due(self, job: Job) -> bool:
        try:
            if not take(self.url, job, self.holder):
                return False
        except Exception as exc:  # the database is down: the next tick tries again
            log.warning("periodic_take_failed", job=job.name, error=repr(exc))
            return False
        started = time.monotonic()
        succeeded = False
        try:
            job.run()
            succeeded = True
        except Exception:
            log.exception("periodic_job_failed", job=job.name)
        finally:
            try:
                finish(self.url, job, self.holder, succeeded)
            except Exception as exc:  # the hold expires by itself; the next run is only later
                log.warning("periodic_finish_failed", job=job.name, error=repr(exc))
        log.debug("periodic_job_ran", job=job.name, seconds=round(time.monotonic() - started, 3))
        return True
