"""Dead letters and their replay (docs/design.md principle 5).

A dead letter is a message row with status `failed`: retries exhausted or a permanent error. The
conversation's stream moved on without it, and the transcript shows the gap. Replaying one puts it
back to `pending`, marked `replayed`, and restarts its conversation's drain, which sends it with the
same idempotency key as before (so Talkdesk sees at most one copy even if an earlier attempt did get
through). A replayed message that is delivered is no longer a dead letter, so replaying twice has no
second effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from shared.leases import lock_conversation
from shared.lifecycle import LEX_DRAIN, TALKDESK_DRAIN
from shared.models import ConversationState, Destination, Message, MessageStatus, utcnow
from shared.outbox import unit_of_work
from shared.settings import Settings
from shared.store import add_event

DRAINS = {Destination.LEX: LEX_DRAIN, Destination.TALKDESK: TALKDESK_DRAIN}


@dataclass(frozen=True)
class DeadLetterFilter:
    ids: Sequence[int] | None = None
    conversation_id: str | None = None
    error_class: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_time(value: str | None, name: str) -> datetime | None:
    """ISO 8601; a time without a zone is UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {value!r} is not an ISO 8601 time (e.g. 2026-11-22T10:00:00Z)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _query(flt: DeadLetterFilter) -> Select[tuple[Message]]:
    query = select(Message).where(Message.status == MessageStatus.FAILED)
    if flt.ids is not None:
        query = query.where(Message.id.in_(list(flt.ids)))
    if flt.conversation_id:
        query = query.where(Message.conversation_id == flt.conversation_id)
    if flt.error_class:
        query = query.where(Message.error_class == flt.error_class)
    if flt.since:
        query = query.where(Message.created_at >= flt.since)
    if flt.until:
        query = query.where(Message.created_at < flt.until)
    return query


def as_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id, "conversation_id": message.conversation_id, "seq": message.seq,
        "destination": message.destination, "sender": message.sender, "event": message.event,
        "body": message.body, "error_class": message.error_class, "last_error": message.last_error,
        "attempts": message.attempts, "replayed": message.replayed, "created_at": message.created_at.isoformat(),
    }


def list_dead_letters(session: Session, flt: DeadLetterFilter, limit: int = 100, offset: int = 0
                      ) -> dict[str, Any]:
    rows = session.scalars(_query(flt).order_by(Message.created_at, Message.id).limit(limit).offset(offset)).all()
    counted = _query(flt).with_only_columns(Message.error_class, func.count()).group_by(Message.error_class)
    counts = {error_class or "unknown": n for error_class, n in session.execute(counted)}
    return {"dead_letters": [as_json(m) for m in rows], "counts": counts, "total": sum(counts.values())}


def matching_ids(session: Session, flt: DeadLetterFilter) -> list[int]:
    return list(session.scalars(_query(flt).with_only_columns(Message.id).order_by(Message.conversation_id,
                                                                                    Message.seq)))


class ReplayOutcome(StrEnum):
    REPLAYED = "replayed"
    NOT_DEAD = "not_dead"  # delivered (or replayed and pending) since it was listed
    CLOSED = "closed"  # the conversation has ended: there is nobody to deliver it to


@dataclass
class ReplaySummary:
    matched: int = 0
    replayed: int = 0
    skipped: int = 0
    ids: list[int] = field(default_factory=list)
    skipped_ids: dict[int, str] = field(default_factory=dict)

    def add(self, message_id: int, outcome: ReplayOutcome) -> None:
        if outcome == ReplayOutcome.REPLAYED:
            self.replayed += 1
            self.ids.append(message_id)
        else:
            self.skipped += 1
            self.skipped_ids[message_id] = outcome.value

    def as_json(self) -> dict[str, Any]:
        return {"matched": self.matched, "replayed": self.replayed, "skipped": self.skipped, "ids": self.ids,
                "skipped_ids": {str(k): v for k, v in self.skipped_ids.items()}}


def replay_one(settings: Settings, message_id: int) -> ReplayOutcome:
    """Put one dead letter back in its conversation's stream; one transaction, drain after commit."""
    with unit_of_work(settings) as uow:
        message = uow.session.get(Message, message_id)
        if message is None:
            return ReplayOutcome.NOT_DEAD
        conversation = lock_conversation(uow.session, message.conversation_id)
        uow.session.refresh(message)
        if conversation is None or message.status != MessageStatus.FAILED:
            return ReplayOutcome.NOT_DEAD
        if conversation.state == ConversationState.CLOSED and message.event != "conversation_ended":
            return ReplayOutcome.CLOSED
        if message.event == "handoff_requested" and conversation.state == ConversationState.HANDOFF_FAILED:
            # Replaying a failed handoff is asking for an agent again.
            conversation.state = ConversationState.HANDOFF_REQUESTED
            add_event(uow.session, conversation.id, "handoff_requested", replayed=True)
            uow.publish_after_commit("routing.deliver", conversation_id=conversation.id)
        message.status = MessageStatus.PENDING
        message.replayed = True
        message.attempts = 0
        # A replay gets LEXDESK_RETRY_FOR of its own, counted from now, and is reported delayed afresh.
        message.retry_from = utcnow()
        message.delayed_at = None
        uow.publish_after_commit(DRAINS[Destination(message.destination)], conversation_id=conversation.id)
        return ReplayOutcome.REPLAYED
