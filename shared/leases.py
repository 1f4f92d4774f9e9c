"""Per-conversation drain leases (docs/design.md principle 2).

A drain to Lex or to Talkdesk holds a lease on (conversation, destination) while it sends, so at
most one worker sends a conversation's messages to a destination at a time, in seq order, however many
workers the queue has. The lease lives in a row rather than an open transaction so no database
transaction is held across an HTTP call, and it works the same on SQLite and PostgreSQL. It expires,
so a worker killed mid-drain blocks nobody for longer than `lease_seconds`; the sweep then re-drains.
(Delivery to the customer's socket makes no HTTP call and needs no lease: workers/routing.py.)

The lease costs no transaction of its own. It is taken in the transaction that reads the next message
(`Lease.take`) and renewed or given back in the one that records its outcome (`Lease.settle`), so a
message costs two commits: read, then settle. Both lock the conversation row, which is what makes
"give back only when nothing is pending" race-free against writers adding messages: a writer that
commits a row after the check finds no lease, and the drain it publishes takes one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.models import Conversation, DrainLease, Message, MessageStatus, as_utc, utcnow
from shared.settings import Settings


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


class Lease:
    """One drain's claim on (conversation, destination), held across its transactions."""

    def __init__(self, settings: Settings, conversation_id: str, destination: str, holder: str | None = None) -> None:
        self.settings = settings
        self.conversation_id = conversation_id
        self.destination = destination
        # A retried drain comes back as the holder it was (`hold_for_retry`).
        self.holder = holder or uuid.uuid4().hex
        self.done = False  # given back (or held for a retry): the drain stops

    def take(self, session: Session) -> Conversation | None:
        """In the transaction that reads the next message: the conversation, locked, with the lease
        claimed or renewed; None if there is no such conversation or another live drain holds it."""
        conversation = lock_conversation(session, self.conversation_id)
        if conversation is None:
            self.done = True
            return None
        lease = session.get(DrainLease, (self.conversation_id, self.destination))
        expires = utcnow() + timedelta(seconds=self.settings.lease_seconds)
        if lease is None:
            session.add(DrainLease(conversation_id=self.conversation_id, destination=self.destination,
                                   holder=self.holder, expires_at=expires))
        elif lease.holder != self.holder and as_utc(lease.expires_at) > utcnow():
            self.done = True  # that drain only lets go when nothing is pending: it sends ours too
            return None
        else:
            lease.holder, lease.expires_at = self.holder, expires
        return conversation

    def settle(self, session: Session, locked: bool = False) -> bool:
        """In the transaction that recorded a message's outcome: give the lease back if nothing is
        pending (True: the drain is done), else renew it (False: go on). `locked`: the transaction holds
        the conversation's row lock already (no second SELECT ... FOR UPDATE)."""
        if not locked:
            lock_conversation(session, self.conversation_id)
        if has_pending(session, self.conversation_id, self.destination):
            lease = session.get(DrainLease, (self.conversation_id, self.destination))
            if lease is None or lease.holder != self.holder:
                self.done = True  # expired mid-step and taken over: the new holder goes on
                return True
            lease.expires_at = utcnow() + timedelta(seconds=self.settings.lease_seconds)
            return False
        self.give_back(session)
        return True

    def hold_for_retry(self, session: Session, seconds: float) -> None:
        """A message failed and its drain will run again in `seconds`, as this holder: keep the lease
        until then (plus lease_seconds, should the retry be late). Given back instead, the sweep would
        see a pending row that no lease covers and start another drain at once, every sweep, ignoring
        the backoff and Retry-After, and each would schedule a retry of its own."""
        lease = session.get(DrainLease, (self.conversation_id, self.destination))
        if lease is not None and lease.holder == self.holder:
            lease.expires_at = utcnow() + timedelta(seconds=seconds + self.settings.lease_seconds)
        self.done = True

    def give_back(self, session: Session) -> None:
        session.execute(
            delete(DrainLease).where(
                DrainLease.conversation_id == self.conversation_id,
                DrainLease.destination == self.destination,
                DrainLease.holder == self.holder,
            )
        )
        self.done = True


def drain(settings: Settings, conversation_id: str, destination: str, step: Callable[[Lease], None],
          holder: str | None = None) -> None:
    """Run `step` until the lease is given back (or held for a retry). Each step takes the lease in the
    transaction that reads its message (giving it back there if nothing is pending) and settles it in
    the one that records the outcome. If a step raises without having settled it (a crash), it is given
    back here. `holder`: the lease a retry of this drain kept (`Lease.hold_for_retry`)."""
    lease = Lease(settings, conversation_id, destination, holder)
    try:
        while not lease.done:
            step(lease)
    except BaseException:
        if not lease.done:
            # Best effort: the error being raised is the one that matters, and a lease that cannot be
            # given back (the database is what failed) expires by itself in lease_seconds.
            with contextlib.suppress(Exception), session_scope(settings.database_url) as session:
                lease.give_back(session)
        raise
