"""Reading and writing conversations and their messages: the persistence half of every task and of
the services. Functions take an open session; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from shared.domain import TranscriptLine
from shared.models import (
    Connection,
    Conversation,
    ConversationState,
    Destination,
    Message,
    MessageStatus,
    Sender,
    utcnow,
)
from shared.redaction import redact_text, redact_value


def create_conversation(
    session: Session,
    *,
    customer_name: str | None = None,
    customer_email: str | None = None,
    locale: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Conversation:
    """What the customer said about themselves is card-masked here, the one way in, as bodies are in
    add_message: these fields reach the agent at handoff (subject, contact_person, context_parameters)."""
    conversation_id = str(uuid.uuid4())
    conversation = Conversation(
        id=conversation_id,
        state=ConversationState.BOT,
        customer_name=_masked(customer_name, 200),
        customer_email=_masked(customer_email, 320),
        locale=_masked(locale, 32),
        attributes=redact_value(attributes or {}),
        lex_session_id=conversation_id.replace("-", ""),
        last_seq=0,
        last_frame_seq=0,
        acked_frame_seq=0,
    )
    session.add(conversation)
    session.flush()
    return conversation


def _masked(value: str | None, column_length: int) -> str | None:
    # "[card ending 1234]" is longer than a 13-digit number: cut to the column, or the insert fails.
    return None if value is None else redact_text(value)[:column_length]


def _advance_counters(session: Session, conversation_id: str, shown: bool) -> tuple[int, int | None]:
    values: dict[str, Any] = {"last_seq": Conversation.last_seq + 1, "updated_at": utcnow()}
    if shown:
        values["last_frame_seq"] = Conversation.last_frame_seq + 1
    row = session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(**values)
        .returning(Conversation.last_seq, Conversation.last_frame_seq)
    ).one()
    return row.last_seq, (row.last_frame_seq if shown else None)


def add_message(
    session: Session,
    conversation_id: str,
    *,
    sender: Sender,
    destination: Destination,
    body: str = "",
    kind: str = "message",
    event: str | None = None,
    payload: dict[str, Any] | None = None,
    status: MessageStatus = MessageStatus.PENDING,
    **columns: Any,
) -> Message:
    """Append to the transcript. Rows for the customer also get the next frame seq; bodies are
    redacted here, the one way in, so clear card numbers cannot reach the table."""
    seq, frame_seq = _advance_counters(session, conversation_id, destination == Destination.CUSTOMER)
    message = Message(
        conversation_id=conversation_id,
        seq=seq,
        frame_seq=frame_seq,
        sender=sender,
        kind=kind,
        event=event,
        body=redact_text(body),
        payload=payload or {},
        destination=destination,
        status=status,
        attempts=0,
        replayed=False,
        **columns,
    )
    session.add(message)
    session.flush()
    return message


def add_event(session: Session, conversation_id: str, event: str, **fields: Any) -> Message:
    """A lifecycle event shown to the customer (docs/protocol.md §2 `event` frames)."""
    return add_message(
        session, conversation_id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER,
        kind="event", event=event, payload=fields,
    )


def find_by_client_message_id(session: Session, conversation_id: str, client_id: str) -> Message | None:
    return session.scalars(
        select(Message).where(Message.conversation_id == conversation_id,
                              Message.client_message_id == client_id)
    ).one_or_none()


def find_by_talkdesk_message_id(session: Session, conversation_id: str, talkdesk_id: str) -> Message | None:
    return session.scalars(
        select(Message).where(Message.conversation_id == conversation_id,
                              Message.talkdesk_message_id == talkdesk_id)
    ).one_or_none()


def handoff_in_flight(session: Session, within_seconds: float = 60.0) -> bool:
    """Some conversation started its Talkdesk handoff lately and may not have stored the id yet."""
    recent = utcnow() - timedelta(seconds=within_seconds)
    return bool(session.scalar(select(exists().where(
        Conversation.state == ConversationState.HANDOFF_REQUESTED, Conversation.updated_at > recent))))


def lock_message(session: Session, message_id: int) -> Message:
    """The row, locked: a drain settling it must not race another that took over its lease."""
    return session.scalars(select(Message).where(Message.id == message_id).with_for_update()).one()


def next_pending(session: Session, conversation_id: str, destination: Destination) -> Message | None:
    return session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.destination == destination,
               Message.status == MessageStatus.PENDING)
        .order_by(Message.seq)
        .limit(1)
    ).one_or_none()


def transcript(session: Session, conversation_id: str) -> Sequence[Message]:
    return session.scalars(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq)
    ).all()


def transcript_lines(messages: Sequence[Message]) -> list[TranscriptLine]:
    return [
        TranscriptLine(sender=m.sender, text=m.body, created_at=m.created_at, intent=m.intent,
                       sentiment=m.sentiment)
        for m in messages
        if m.kind == "message"
    ]


class Socket(NamedTuple):
    """A live customer socket of a conversation: where its frames go."""

    connection_id: str
    node_id: str
    dialect: str


class Attachment(NamedTuple):
    replaced: list[Socket]  # the oldest sockets the new one pushed out: to be told
    others: list[Socket]  # the conversation's live sockets besides the new one


def attach_connection(session: Session, conversation_id: str, connection_id: str, node_id: str,
                      dialect: str = "native", max_sockets: int = 1) -> Attachment:
    """The new socket joins the conversation's live ones (several tabs each show it); the oldest live
    ones beyond `max_sockets` in all make way. Rows of sockets that are gone are deleted here, so a
    conversation keeps at most `max_sockets` rows, not one per resume: a client resuming in a loop must
    not grow the table. (A live row whose node died without saying so is pushed out the same way, or
    goes when that node starts again: detach_node.)"""
    session.execute(delete(Connection).where(Connection.conversation_id == conversation_id,
                                             Connection.disconnected_at.is_not(None)))
    live = live_sockets(session, conversation_id)
    cut = max(0, len(live) - max_sockets + 1)
    replaced, others = live[:cut], live[cut:]
    if replaced:
        session.execute(delete(Connection).where(
            Connection.connection_id.in_([socket.connection_id for socket in replaced])))
    session.add(Connection(conversation_id=conversation_id, connection_id=connection_id, node_id=node_id,
                           dialect=dialect))
    session.flush()
    return Attachment(replaced, others)


def live_sockets(session: Session, conversation_id: str) -> list[Socket]:
    """The conversation's sockets that are attached now, oldest first."""
    rows = session.execute(
        select(Connection.connection_id, Connection.node_id, Connection.dialect)
        .where(Connection.conversation_id == conversation_id, Connection.disconnected_at.is_(None))
        .order_by(Connection.id)
    ).all()
    return [Socket(row.connection_id, row.node_id, row.dialect) for row in rows]


def by_node(sockets: Iterable[Socket]) -> dict[str, list[str]]:
    """Socket ids grouped by the edge node holding them: one publish per node carries a conversation's
    frames to all of that node's sockets of it."""
    grouped: dict[str, list[str]] = {}
    for socket in sockets:
        grouped.setdefault(socket.node_id, []).append(socket.connection_id)
    return grouped


def detach_connection(session: Session, connection_id: str) -> None:
    session.execute(
        update(Connection)
        .where(Connection.connection_id == connection_id, Connection.disconnected_at.is_(None))
        .values(disconnected_at=utcnow())
    )


def detach_node(session: Session, node_id: str) -> int:
    """An edge node starting under an id it had before holds none of that run's sockets."""
    return session.execute(
        update(Connection)
        .where(Connection.node_id == node_id, Connection.disconnected_at.is_(None))
        .values(disconnected_at=utcnow())
    ).rowcount


def customer_frame(message: Message) -> dict[str, Any]:
    """The server→client frame for a transcript row (docs/protocol.md §2)."""
    if message.kind == "event":
        return {"type": "event", "seq": message.frame_seq, "event": message.event, **message.payload}
    frame: dict[str, Any] = {"type": "message", "seq": message.frame_seq, "from": message.sender,
                             "text": message.body}
    for key in ("author", "cards", "lex"):
        if key in message.payload:
            frame[key] = message.payload[key]
    if message.replayed:
        frame["replayed"] = True
    return frame
