"""Retention: a closed conversation whose last activity is older than a cut-off is deleted, with its
messages, connections and drain leases. The periodic task (`timers.purge_expired`, cut-off
LEXDESK_RETENTION_DAYS) and the operator's `lexdesk purge --older-than 90d [--dry-run]` both call
`purge`.

Only closed conversations go: an open one is still someone's chat, however quiet (the inactivity
timer closes it first). "Last activity" is `updated_at`, which every new row, state change and
acknowledgement moves, so a conversation closed long ago but acknowledged yesterday stays a little
longer. Deletion runs in batches, one transaction per batch of conversations, so no transaction grows
with the backlog and a crash loses at most the batch in progress (the next run takes it again).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.models import Connection, Conversation, ConversationState, DrainLease, Message, utcnow

DEFAULT_BATCH_SIZE = 200
_AGE = re.compile(r"([0-9]{1,6})([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h` or `30m`; ValueError (naming the accepted forms) for anything else, 0 included:
    an age of 0 would delete every closed conversation, which nobody means by accident."""
    match = _AGE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not an age: use a whole number of days, hours or minutes (90d, 12h, 30m)")
    amount, unit = int(match.group(1)), match.group(2)
    if amount == 0:
        raise ValueError(f"{text!r}: the age must be more than 0")
    return timedelta(**{_UNITS[unit]: amount})


def cutoff_for(age: timedelta, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - age


@dataclass
class PurgeResult:
    conversations: int = 0
    messages: int = 0
    connections: int = 0
    dry_run: bool = False
    # False when the run stopped at its time budget with more left to delete (the next run goes on).
    complete: bool = True

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _expired(cutoff: datetime) -> ColumnElement[bool]:
    return and_(Conversation.state == ConversationState.CLOSED, Conversation.updated_at < cutoff)


def count(session: Session, cutoff: datetime) -> PurgeResult:
    """What a purge with this cut-off would delete."""
    ids = select(Conversation.id).where(_expired(cutoff))
    return PurgeResult(
        conversations=session.scalar(select(func.count()).select_from(Conversation).where(_expired(cutoff))) or 0,
        messages=session.scalar(select(func.count()).select_from(Message).where(Message.conversation_id.in_(ids)))
        or 0,
        connections=session.scalar(select(func.count()).select_from(Connection)
                                   .where(Connection.conversation_id.in_(ids))) or 0,
        dry_run=True,
    )


def _purge_batch(session: Session, cutoff: datetime, batch_size: int, result: PurgeResult) -> int:
    # Locked, and re-checked under the lock: a conversation another transaction holds is skipped,
    # not waited for; the next batch or run takes it. (SQLite has no row locks: its writers are serial.)
    ids = list(session.scalars(
        select(Conversation.id).where(_expired(cutoff)).order_by(Conversation.updated_at).limit(batch_size)
        .with_for_update(skip_locked=True)))
    if not ids:
        return 0
    # Children first, explicitly: the schema cascades, but counting what went is the operator's answer.
    result.messages += session.execute(delete(Message).where(Message.conversation_id.in_(ids))).rowcount
    result.connections += session.execute(delete(Connection).where(Connection.conversation_id.in_(ids))).rowcount
    session.execute(delete(DrainLease).where(DrainLease.conversation_id.in_(ids)))
    deleted = session.execute(delete(Conversation).where(Conversation.id.in_(ids))).rowcount
    result.conversations += deleted
    return len(ids)


def purge(url: str, cutoff: datetime, *, dry_run: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
          max_seconds: float | None = None) -> PurgeResult:
    """Delete closed conversations whose last activity is before `cutoff`, `batch_size` conversations
    per transaction; with `dry_run`, only count them. `max_seconds` bounds the run (a periodic task
    must give its worker back); without it the run goes until nothing is left."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if dry_run:
        with session_scope(url) as session:
            return count(session, cutoff)
    result = PurgeResult()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    while True:
        with session_scope(url) as session:
            taken = _purge_batch(session, cutoff, batch_size, result)
        if taken < batch_size:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            result.complete = False
            return result
