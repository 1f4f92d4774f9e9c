"""Queue `routing`: frames for the customer go to the edge node that holds their socket; the
customer's acknowledgements and resumes say what must go (again)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.edge_bus import CATCH_UP_DONE, CATCH_UP_MORE, publish_frames
from shared.leases import lock_conversation
from shared.lifecycle import DELIVER
from shared.message_status import echo_frame, snapshot, snapshot_frames
from shared.models import Conversation, Destination, Message, MessageStatus, Sender, utcnow
from shared.outbox import UnitOfWork, unit_of_work
from shared.store import by_node, customer_frame, live_sockets
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
def customer_resumed(conversation_id: str, last_seq: int, connection_id: str | None = None,
                     echo: bool = False) -> None:
    """The customer reattached (any node) having shown everything up to `last_seq`: that socket is sent
    every later frame, in order (its catch-up), with the status of the customer's messages and, if it
    asked for them (`echo`), the customer's own lines in their places. The conversation's other tabs
    get none of it: they have it. The node holds the socket's live frames back until the catch-up is
    done, and drops any it repeats (services/edge), so the socket sees each seq once and in order.

    The catch-up is published under the conversation's row lock, as `deliver` publishes: a frame is
    either in it or published after it to every socket, this one included."""
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            return
        # A client cannot have shown what was never sent to it, whatever last_seq it claims.
        last_seq = min(max(last_seq, 0), _highest_sent(uow.session, conversation_id))
        if last_seq > conversation.acked_frame_seq:
            _mark_delivered(uow.session, conversation_id, last_seq)
            conversation.acked_frame_seq = last_seq
        if connection_id is None:
            _resend_to_all(uow, conversation_id, last_seq)  # an edge node of the one-socket version
            return
        socket = next((s for s in live_sockets(uow.session, conversation_id) if s.connection_id == connection_id),
                      None)
        if socket is None:
            return  # gone already: its next resume catches up
        batches = _catch_up(uow.session, conversation_id, last_seq, echo=echo and socket.dialect == "native")
        if socket.dialect == "native":
            batches[-1].extend(snapshot_frames(uow.session, conversation_id))
        for index, frames in enumerate(batches):
            publish_frames(socket.node_id, conversation_id, [connection_id], frames,
                           catch_up=CATCH_UP_DONE if index == len(batches) - 1 else CATCH_UP_MORE)
        # Frames still pending are in the catch-up and go to every socket too (this one drops them).
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)


def _catch_up(session: Session, conversation_id: str, last_seq: int, *, echo: bool) -> list[list[dict[str, Any]]]:
    """Every frame after `last_seq` that is or will be shown, and with `echo` the customer's messages
    since then, in transcript order, in batches of FRAMES_PER_PUBLISH (at least one, maybe empty)."""
    shown = and_(Message.destination == Destination.CUSTOMER, Message.frame_seq > last_seq,
                 Message.status.in_([MessageStatus.PENDING, MessageStatus.SENT, MessageStatus.DELIVERED]))
    wanted = shown
    if echo:
        since = session.scalar(select(Message.seq).where(Message.conversation_id == conversation_id,
                                                         Message.frame_seq == last_seq)) if last_seq else 0
        wanted = or_(shown, and_(Message.sender == Sender.CUSTOMER, Message.client_message_id.is_not(None),
                                 Message.seq > (since or 0)))
    batches: list[list[dict[str, Any]]] = [[]]
    after_seq = last_seq
    for message in session.scalars(select(Message).where(Message.conversation_id == conversation_id, wanted)
                                   .order_by(Message.seq)):
        if message.frame_seq is not None and message.destination == Destination.CUSTOMER:
            frame = customer_frame(message)
            after_seq = message.frame_seq
        else:
            frame = echo_frame(message, after_seq)
        if frame is None:
            continue
        if len(batches[-1]) >= FRAMES_PER_PUBLISH:
            batches.append([])
        batches[-1].append(frame)
    return batches


def _resend_to_all(uow: UnitOfWork, conversation_id: str, last_seq: int) -> None:
    """Every frame after last_seq goes out again, to every socket (which drop what they have)."""
    uow.session.execute(
        update(Message)
        .where(Message.conversation_id == conversation_id, Message.destination == Destination.CUSTOMER,
               Message.frame_seq > last_seq,
               Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]))
        .values(status=MessageStatus.PENDING)
    )
    uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
    snapshot(uow.session, conversation_id, uow.notices)


@app.task(name="routing.deliver", base=LexdeskTask)
def deliver(conversation_id: str) -> None:
    """Send the conversation's pending frames to every socket it has (several tabs), one publish per
    edge node holding any, in one transaction per batch. With no socket they stay pending and go out,
    in order, when the customer resumes.

    No drain lease: this makes no HTTP call, so it holds the conversation's row lock while it reads,
    publishes and marks the frames `sent`. Two deliveries of one conversation cannot interleave, and a
    batch leaves in `frame_seq` order. If the commit fails after the publish, the frames are still
    pending and go out again with the same seq, which the client drops (docs/protocol.md §2)."""
    url = settings().database_url
    while True:
        with session_scope(url) as session:
            if lock_conversation(session, conversation_id) is None:
                return
            nodes = by_node(live_sockets(session, conversation_id))
            if not nodes:
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
            frames = [customer_frame(m) for m in messages]
            for node_id, connection_ids in nodes.items():
                publish_frames(node_id, conversation_id, connection_ids, frames)
            now = utcnow()
            for message in messages:
                message.status = MessageStatus.SENT
                message.sent_at = now
                message.attempts += 1
        if len(messages) < FRAMES_PER_PUBLISH:
            return
