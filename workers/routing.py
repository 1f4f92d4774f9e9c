"""Queue `routing`: frames for the customer go to the edge node that holds their socket; the
customer's acknowledgements and resumes say what must go (again)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.edge_bus import publish_frames
from shared.leases import lock_conversation
from shared.lifecycle import DELIVER
from shared.message_status import snapshot
from shared.models import Conversation, Destination, Message, MessageStatus, utcnow
from shared.outbox import unit_of_work
from shared.store import current_connection, customer_frame
from workers.base import LexdeskTask, app, settings

FRAMES_PER_PUBLISH = 100


@app.task(name="routing.customer_acks", base=LexdeskTask)
def customer_acks(acks: list[list[Any]]) -> None:
    """An edge node's acknowledgements of one interval, `[[conversation_id, seq], ...]`, applied in one
    transaction: one statement marks every conversation's frames up to its seq delivered, one advances
    the conversations' acknowledged seq (never beyond what was numbered: the edge bounds each ack by
    what it wrote, and a bound on what was committed as sent would race the deliver task's commit)."""
    highest: dict[str, int] = {}
    for conversation_id, seq in acks:
        if isinstance(seq, int) and seq > 0:
            highest[str(conversation_id)] = max(seq, highest.get(str(conversation_id), 0))
    rows = dict(sorted(highest.items()))  # a stable order takes the rows' locks in a stable order
    if not rows:
        return
    # `CASE conversation_id WHEN ... THEN seq END`: one statement for the batch, on PostgreSQL and SQLite.
    acked_up_to = case(rows, value=Message.conversation_id)
    with session_scope(settings().database_url) as session:
        # The conversations' row locks first, in id order, then their messages': the order every other
        # writer (delivery, a customer's message) takes them in. The other way round, an ack batch and a
        # delivery of the same conversation deadlocked (seen with many sockets resuming one conversation).
        session.execute(select(Conversation.id).where(Conversation.id.in_(list(rows)))
                        .order_by(Conversation.id).with_for_update())
        session.execute(
            update(Message)
            .where(Message.conversation_id.in_(list(rows)), Message.frame_seq <= acked_up_to,
                   Message.destination == Destination.CUSTOMER,
                   Message.status.in_([MessageStatus.PENDING, MessageStatus.SENT]))
            .values(status=MessageStatus.DELIVERED, delivered_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        asked = case(rows, value=Conversation.id)
        bounded = case((asked < Conversation.last_frame_seq, asked), else_=Conversation.last_frame_seq)
        session.execute(
            update(Conversation)
            .where(Conversation.id.in_(list(rows)), Conversation.acked_frame_seq < bounded)
            .values(acked_frame_seq=bounded)
            .execution_options(synchronize_session=False)
        )


@app.task(name="routing.customer_ack", base=LexdeskTask)
def customer_ack(conversation_id: str, seq: int) -> None:
    """One acknowledgement (edge nodes of an earlier version send these; now they batch them)."""
    with session_scope(settings().database_url) as session:
        conversation = lock_conversation(session, conversation_id)
        if conversation is None:
            return
        # The edge never forwards an ack beyond what it wrote to the socket (services/edge/server.py); a
        # bound on what was *committed* as sent here would race the deliver task's commit.
        seq = min(seq, conversation.last_frame_seq)
        if seq <= conversation.acked_frame_seq:
            return
        _mark_delivered(session, conversation_id, seq)
        conversation.acked_frame_seq = seq


def _highest_sent(session: Session, conversation_id: str) -> int:
    return session.scalar(
        select(func.max(Message.frame_seq)).where(
            Message.conversation_id == conversation_id, Message.destination == Destination.CUSTOMER,
            Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]))
    ) or 0


def _mark_delivered(session: Session, conversation_id: str, up_to: int) -> None:
    session.execute(
        update(Message)
        .where(Message.conversation_id == conversation_id, Message.destination == Destination.CUSTOMER,
               Message.frame_seq <= up_to, Message.status.in_([MessageStatus.PENDING, MessageStatus.SENT]))
        .values(status=MessageStatus.DELIVERED, delivered_at=utcnow())
    )


@app.task(name="routing.customer_resumed", base=LexdeskTask)
def customer_resumed(conversation_id: str, last_seq: int) -> None:
    """The customer reattached (any node) having shown everything up to `last_seq`: every later frame
    goes out again, in order, to the new socket, with the status of the customer's messages."""
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            return
        # A client cannot have shown what was never sent to it, whatever last_seq it claims.
        last_seq = min(max(last_seq, 0), _highest_sent(uow.session, conversation_id))
        if last_seq > conversation.acked_frame_seq:
            _mark_delivered(uow.session, conversation_id, last_seq)
            conversation.acked_frame_seq = last_seq
        # Every frame after last_seq, acknowledged before or not: a reloaded page resumes from 0 to
        # show the whole conversation again (docs/protocol.md §2: "every server frame with seq > N").
        uow.session.execute(
            update(Message)
            .where(Message.conversation_id == conversation_id, Message.destination == Destination.CUSTOMER,
                   Message.frame_seq > last_seq,
                   Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]))
            .values(status=MessageStatus.PENDING)
        )
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
        # What became of the customer's own messages, which a reloaded page no longer knows.
        snapshot(uow.session, conversation_id, uow.notices)


@app.task(name="routing.deliver", base=LexdeskTask)
def deliver(conversation_id: str) -> None:
    """Send the conversation's pending frames to the node holding the customer's socket, in one
    transaction per batch. With no socket they stay pending and go out, in order, when the customer
    resumes.

    No drain lease: this makes no HTTP call, so it holds the conversation's row lock while it reads,
    publishes and marks the frames `sent`. Two deliveries of one conversation cannot interleave, and a
    batch leaves in `frame_seq` order. If the commit fails after the publish, the frames are still
    pending and go out again with the same seq, which the client drops (docs/protocol.md §2)."""
    url = settings().database_url
    while True:
        with session_scope(url) as session:
            if lock_conversation(session, conversation_id) is None:
                return
            connection = current_connection(session, conversation_id)
            if connection is None:
                return
            messages = session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.destination == Destination.CUSTOMER,
                       Message.status == MessageStatus.PENDING)
                .order_by(Message.frame_seq)
                .limit(FRAMES_PER_PUBLISH)
            ).all()
            if not messages:
                return
            publish_frames(connection.node_id, conversation_id, connection.connection_id,
                           [customer_frame(m) for m in messages])
            now = utcnow()
            for message in messages:
                message.status = MessageStatus.SENT
                message.sent_at = now
                message.attempts += 1
        if len(messages) < FRAMES_PER_PUBLISH:
            return
