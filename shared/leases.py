"""Per-conversation drain leases (docs/design.md principle 2).

A drain (to Lex, to Talkdesk, or to the customer's socket) holds a lease on (conversation,
destination) while it sends, so at most one worker sends a conversation's messages to a destination at
a time, in seq order, however many workers the queue has. The lease lives in a row rather than an
open transaction so no database transaction is held across an HTTP call, and it works the same on
SQLite and PostgreSQL. It expires, so a worker killed mid-drain blocks nobody for longer than
`lease_seconds`; the sweep then re-drains. Claim and release both lock the conversation row, which is
what makes "release only when nothing is pending" race-free against writers adding messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.models import Conversation, DrainLease, Message, MessageStatus, utcnow
from shared.settings import Settings


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every datetime we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def lock_conversation(session: Session, conversation_id: str) -> Conversation | None:
    return session.scalars(
        select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    ).one_or_none()


def has_pending(session: Session, conversation_id: str, destination: str) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    Message.conversation_id == conversation_id,
                    Message.destination == destination,
                    Message.status == MessageStatus.PENDING,
                )
            )
        )
    )


def claim(session: Session, conversation_id: str, destination: str, holder: str, seconds: float) -> bool:
    if lock_conversation(session, conversation_id) is None:
        return False
    lease = session.get(DrainLease, (conversation_id, destination))
    expires = utcnow() + timedelta(seconds=seconds)
    if lease is None:
        session.add(DrainLease(conversation_id=conversation_id, destination=destination, holder=holder,
                               expires_at=expires))
        return True
    if lease.holder != holder and as_utc(lease.expires_at) > utcnow():
        return False
    lease.holder, lease.expires_at = holder, expires
    return True


def release(session: Session, conversation_id: str, destination: str, holder: str) -> None:
    session.execute(
        delete(DrainLease).where(
            DrainLease.conversation_id == conversation_id,
            DrainLease.destination == destination,
            DrainLease.holder == holder,
        )
    )


def drain(
    settings: Settings,
    conversation_id: str,
    destination: str,
    step: Callable[[], bool],
    *,
    pending: Callable[[Session], bool] | None = None,
) -> bool:
    """Run `step` (which handles one pending message and returns False when there was none) while
    holding the lease. Returns False if another worker holds it: that worker will see our messages,
    because it only lets go when, under the conversation lock, nothing is pending.

    `pending` replaces the default "is a row pending for this destination" check, for destinations
    that can have pending rows they cannot send yet (customer frames while no socket is connected)."""
    holder = uuid.uuid4().hex
    url = settings.database_url
    with session_scope(url) as session:
        if not claim(session, conversation_id, destination, holder, settings.lease_seconds):
            return False
    idle_checks = 0
    try:
        while True:
            if step():
                idle_checks = 0
                with session_scope(url) as session:  # renew, so the lease can be short
                    if not claim(session, conversation_id, destination, holder, settings.lease_seconds):
                        return False  # expired mid-step and taken over: the new holder goes on
                continue
            with session_scope(url) as session:
                lock_conversation(session, conversation_id)
                more = pending(session) if pending else has_pending(session, conversation_id, destination)
                if not more:
                    release(session, conversation_id, destination, holder)
                    return True
            idle_checks += 1
            if idle_checks > 3:  # a row arriving mid-check is picked up at once; this is a bug instead
                raise RuntimeError(f"{destination} drain of {conversation_id} sees pending rows it cannot send")
    except BaseException:
        with session_scope(url) as session:
            release(session, conversation_id, destination, holder)
        raise
