"""Transactional outbox: publishing tied to commit.

A task that must run because of a database change is named in the same transaction as the change
(`UnitOfWork.publish_after_commit`) and published once that transaction has committed, never before
(a worker must not read the database before the change is there).

Two kinds, by what the database already records:
- Drains (`lex.drain`, `talkdesk.drain`, `routing.deliver`) get no outbox row. The pending rows they
  drain are the durable record: if the process dies between the commit and the publish, or the broker
  is down, the sweep (`timers.sweep`) finds a pending row that no drain lease covers and publishes the
  drain then. An outbox row would be a second record of the same fact, written and deleted in two
  more transactions per message.
- Any other task (a still-waiting timer) is written to the `outbox` table in the transaction; after
  the commit the entries are published and deleted, and the sweep publishes what a crash left behind.

Status frames for the customer (shared/message_status.py) are published after the commit too, with no
row: the message rows are their record, and a resume sends them again.

A task may therefore be published twice; every task is idempotent (drains re-read the database), so
that is harmless. What cannot happen is a committed change whose follow-up work is never published.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.celery_app import send_task
from shared.db import session_scope
from shared.message_status import Notices
from shared.models import Message, OutboxEntry, utcnow
from shared.settings import Settings

log = structlog.get_logger(__name__)


# Recovered from the rows they drain (see above): published after commit with no outbox row.
DRAIN_TASKS = frozenset({"lex.drain", "talkdesk.drain", "routing.deliver"})


class UnitOfWork:
    """One transaction plus the tasks to publish once it has committed."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._entries: list[OutboxEntry] = []
        self.drains: list[tuple[str, dict[str, Any]]] = []
        self.notices = Notices()  # status frames for customers, published after commit too

    def notify(self, message: Message, status: str, detail: str | None = None) -> None:
        """Tell the customer, once this transaction has committed, what became of their message."""
        self.notices.add(message, status, detail)

    def publish_after_commit(self, task: str, **kwargs: Any) -> None:
        if task in DRAIN_TASKS:
            # Keyed by conversation: the same drain twice in one transaction is pointless.
            if (task, kwargs) not in self.drains:
                self.drains.append((task, kwargs))
            return
        if any(e.task == task and e.args == kwargs for e in self._entries):
            return
        entry = OutboxEntry(task=task, args=kwargs)
        self.session.add(entry)
        self._entries.append(entry)

    @property
    def entry_ids(self) -> list[int]:
        return [e.id for e in self._entries]


@contextmanager
def unit_of_work(settings: Settings) -> Iterator[UnitOfWork]:
    with session_scope(settings.database_url) as session:
        uow = UnitOfWork(session)
        yield uow
        session.flush()
        ids = uow.entry_ids
        if uow.notices.frames:
            uow.notices.address(session)
    publish_drains(uow.drains)
    uow.notices.publish()
    if ids:
        relay(settings, ids)


def publish_drains(drains: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Publish drains after their transaction committed. A failure is logged, never raised: the change
    has committed, and the sweep re-drains the pending rows it left."""
    for task, kwargs in drains:
        try:
            send_task(task, **kwargs)
        except Exception as exc:
            log.warning("drain_publish_failed", task=task, error=repr(exc), **kwargs)


def relay(settings: Settings, ids: Iterable[int] | None = None, older_than: float | None = None) -> int:
    """Publish outbox entries (the given ids, or all older than `older_than` seconds) and delete them.

    A publish failure leaves the entries for the sweep and is logged, never raised: the transaction
    that wrote them has already committed and its caller's work is done.
    """
    published = 0
    try:
        with session_scope(settings.database_url) as session:
            query = select(OutboxEntry).order_by(OutboxEntry.id).limit(500)
            if ids is not None:
                query = query.where(OutboxEntry.id.in_(list(ids)))
            if older_than is not None:
                query = query.where(OutboxEntry.created_at < utcnow() - timedelta(seconds=older_than))
            for entry in session.scalars(query.with_for_update(skip_locked=True)):
                send_task(entry.task, **entry.args)
                session.execute(delete(OutboxEntry).where(OutboxEntry.id == entry.id))
                published += 1
    except Exception as exc:  # the sweep retries; see the module docstring
        log.warning("outbox_relay_failed", error=repr(exc), published=published)
        return 0
    return published
