"""The schema: conversations, their messages (the transcript and the delivery queue in one), the
customer's connections, drain leases and the outbox. Changed only through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BIGINT keys on PostgreSQL, INTEGER (rowid alias, autoincrementing) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every datetime we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class ConversationState(StrEnum):
    BOT = "bot"
    HANDOFF_REQUESTED = "handoff_requested"
    AGENT_QUEUED = "agent_queued"
    AGENT_ACTIVE = "agent_active"
    CLOSED = "closed"
    HANDOFF_FAILED = "handoff_failed"


class Sender(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class Destination(StrEnum):
    """Where a message row still has to go. Each row has exactly one destination."""

    LEX = "lex"
    TALKDESK = "talkdesk"
    CUSTOMER = "customer"
    NONE = "none"  # transcript-only rows


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"  # handed to the edge node (customer frames only); resent on resume until acked
    DELIVERED = "delivered"
    FAILED = "failed"  # dead letter: retries exhausted or a permanent error
    SKIPPED = "skipped"  # no longer deliverable by design (conversation closed before it went out)
    # A later message of a multi-message bot answer, not yet shown (shared/pacing.py): shown in its
    # turn (then `pending` for the customer), or cut short by the customer writing first.
    HELD = "held"


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    state: Mapped[str] = mapped_column(String(32), default=ConversationState.BOT, index=True)
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    locale: Mapped[str | None] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lex_session_id: Mapped[str] = mapped_column(String(100))
    talkdesk_conversation_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    agent_name: Mapped[str | None] = mapped_column(String(200))
    last_sentiment: Mapped[str | None] = mapped_column(String(16))
    # The slot Lex asked for last: when it is a card or CVV slot, the next answer is sensitive.
    eliciting_slot: Mapped[str | None] = mapped_column(String(100))
    # Lex's sessionState after the last recorded turn, sealed (it holds slot values, card numbers
    # among them): a turn that may have reached Lex before a crash is replayed from it.
    lex_session_state: Mapped[str | None] = mapped_column(Text)
    # Counters, advanced with UPDATE ... RETURNING so concurrent writers never share a number.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_frame_seq: Mapped[int] = mapped_column(Integer, default=0)
    acked_frame_seq: Mapped[int] = mapped_column(Integer, default=0)
    closed_by: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)
    closed_at: Mapped[datetime | None]
    # Since when it waits for an agent (Talkdesk took the handoff): its place in the queue.
    queued_at: Mapped[datetime | None]
    # The customer's rating of the chat, asked for when the agent ended it (1-5, a comment, redacted).
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None]
    # A message left for the agents outside business hours (shared/left_messages.py). Requested: the
    # customer was offered it, and the next message is the left one; both set: it waits for the opening;
    # requested cleared again once it is handed over (left_message_at stays, for the record).
    leave_message_requested_at: Mapped[datetime | None]
    left_message_at: Mapped[datetime | None]


Index("ix_conversations_queue", Conversation.state, Conversation.queued_at)
# The opening's hand-over: conversations with a left message, oldest first.
Index("ix_conversations_left_message", Conversation.left_message_at)


class Message(Base):
    """One transcript entry. `seq` orders the transcript; `frame_seq` numbers what the customer sees
    (docs/protocol.md §2: no gaps), so only rows shown to the customer have one."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        UniqueConstraint("conversation_id", "frame_seq", name="uq_messages_conversation_frame_seq"),
        UniqueConstraint("conversation_id", "client_message_id", name="uq_messages_client_message_id"),
        UniqueConstraint("conversation_id", "talkdesk_message_id", name="uq_messages_talkdesk_message_id"),
        Index("ix_messages_outgoing", "conversation_id", "destination", "status", "seq"),
        Index("ix_messages_dead_letters", "status", "error_class", "created_at"),
        Index("ix_messages_delayed", "status", "delayed_at", "destination"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    frame_seq: Mapped[int | None] = mapped_column(Integer)
    sender: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="message")  # message | event
    event: Mapped[str | None] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text, default="")  # redacted before it is stored
    # The clear text of a redacted customer message, encrypted, until Lex has it (shared/sealing.py).
    sealed_body: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)  # cards, lex info, event fields
    destination: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(64))
    client_message_id: Mapped[str | None] = mapped_column(String(128))
    talkdesk_message_id: Mapped[str | None] = mapped_column(String(128))
    intent: Mapped[str | None] = mapped_column(String(100))
    intent_state: Mapped[str | None] = mapped_column(String(32))
    dialog_action: Mapped[str | None] = mapped_column(String(32))
    sentiment: Mapped[str | None] = mapped_column(String(16))
    replayed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    # First reported `delayed` to the customer (failing towards Lex or Talkdesk, or waiting behind a
    # message that is, for longer than LEXDESK_DELAYED_AFTER): see shared/message_status.py.
    delayed_at: Mapped[datetime | None]
    # Where LEXDESK_RETRY_FOR counts from when it is not `created_at` (the acceptance): the replay
    # that put a dead letter back.
    retry_from: Mapped[datetime | None]


class Connection(Base):
    """A customer socket: which edge node holds the conversation right now."""

    __tablename__ = "connections"
    __table_args__ = (Index("ix_connections_current", "conversation_id", "disconnected_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(String(64), unique=True)
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    dialect: Mapped[str] = mapped_column(String(16), default="native")
    connected_at: Mapped[datetime] = mapped_column(default=utcnow)
    disconnected_at: Mapped[datetime | None]


class DrainLease(Base):
    """Who is draining a conversation towards one destination, until when (principle 2)."""

    __tablename__ = "drain_leases"

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    destination: Mapped[str] = mapped_column(String(16), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]


class OutboxEntry(Base):
    """A task to publish once the transaction that wrote it commits (see shared/outbox.py)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class PeriodicJob(Base):
    """A job any worker of the `timers` queue may run, one at a time across all of them
    (shared/periodic.py): who runs it now (until when), and when and by whom it last finished."""

    __tablename__ = "periodic_jobs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    held_until: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    last_holder: Mapped[str | None] = mapped_column(String(128))


class Readiness(Base):
    """One row /readyz writes (shared/readiness.py): "ready" must mean the database takes a write, and a
    full disk, a locked SQLite file or a read-only replica all still answer SELECT 1."""

    __tablename__ = "readiness"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    checked_at: Mapped[datetime | None]
