"""Queue `routing`: customer and agent events become transcript rows, and rows for the customer go
to the edge node that holds their socket."""

from __future__ import annotations

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.domain import destination_for_customer_message
from shared.edge_bus import publish_frames
from shared.leases import drain, lock_conversation
from shared.lifecycle import DELIVER, close
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
from shared.outbox import unit_of_work
from shared.sealing import seal, stored_form
from shared.store import (
    add_event,
    add_message,
    current_connection,
    customer_frame,
    find_by_client_message_id,
    find_by_talkdesk_message_id,
)
from workers.base import app, data_key, log, settings

FRAMES_PER_PUBLISH = 100
AGENT_SIDE_STATES = (ConversationState.HANDOFF_REQUESTED, ConversationState.AGENT_QUEUED,
                     ConversationState.AGENT_ACTIVE)


@app.task(name="routing.customer_message")
def customer_message(conversation_id: str, client_message_id: str, text: str) -> None:
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            log.error("customer_message_for_unknown_conversation", conversation_id=conversation_id)
            return
        if find_by_client_message_id(uow.session, conversation_id, client_message_id):
            return  # a resent frame: the first one already counted
        destination = destination_for_customer_message(conversation.state)
        if destination is None:
            add_message(uow.session, conversation_id, sender=Sender.CUSTOMER, destination=Destination.NONE,
                        body=text, client_message_id=client_message_id, status=MessageStatus.SKIPPED,
                        last_error="conversation closed")
            return
        body, sensitive = stored_form(text, conversation.eliciting_slot if destination == Destination.LEX else None)
        sealed = seal(data_key(), text) if sensitive and destination == Destination.LEX else None
        add_message(uow.session, conversation_id, sender=Sender.CUSTOMER, destination=destination, body=body,
                    client_message_id=client_message_id, sealed_body=sealed)
        uow.publish_after_commit(f"{destination}.drain", conversation_id=conversation_id)



@app.task(name="routing.customer_ack")
def customer_ack(conversation_id: str, seq: int) -> None:
    with session_scope(settings().database_url) as session:
        conversation = lock_conversation(session, conversation_id)
        if conversation is None:
            return
        seq = min(seq, conversation.last_frame_seq)
        if seq <= conversation.acked_frame_seq:
            return
        _mark_delivered(session, conversation_id, seq)
        conversation.acked_frame_seq = seq


def _mark_delivered(session: Session, conversation_id: str, up_to: int) -> None:
    session.execute(
        update(Message)
        .where(Message.conversation_id == conversation_id, Message.destination == Destination.CUSTOMER,
               Message.frame_seq <= up_to, Message.status.in_([MessageStatus.PENDING, MessageStatus.SENT]))
        .values(status=MessageStatus.DELIVERED, delivered_at=utcnow())
    )


@app.task(name="routing.customer_resumed")
def customer_resumed(conversation_id: str, last_seq: int) -> None:
    """The customer reattached (any node) having shown everything up to `last_seq`: every later frame
    goes out again, in order, to the new socket."""
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            return
        last_seq = min(max(last_seq, 0), conversation.last_frame_seq)
        if last_seq > conversation.acked_frame_seq:
            _mark_delivered(uow.session, conversation_id, last_seq)
            conversation.acked_frame_seq = last_seq
        uow.session.execute(
            update(Message)
            .where(Message.conversation_id == conversation_id, Message.destination == Destination.CUSTOMER,
                   Message.frame_seq > last_seq, Message.status == MessageStatus.SENT)
            .values(status=MessageStatus.PENDING)
        )
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)


@app.task(name="routing.customer_end")
def customer_end(conversation_id: str) -> None:
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is not None:
            close(uow, conversation, by="customer")


@app.task(name="routing.agent_joined")
def agent_joined(conversation_id: str, agent_name: str | None = None) -> None:
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None or conversation.state not in AGENT_SIDE_STATES:
            return
        if conversation.state == ConversationState.AGENT_ACTIVE and conversation.agent_name == agent_name:
            return  # the same join, delivered again
        _join(uow.session, conversation, agent_name)
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)


def _join(session: Session, conversation: Conversation, agent_name: str | None) -> None:
    conversation.state = ConversationState.AGENT_ACTIVE
    conversation.agent_name = agent_name
    add_event(session, conversation.id, "agent_joined", **({"author": agent_name} if agent_name else {}))


@app.task(name="routing.agent_message")
def agent_message(conversation_id: str, talkdesk_message_id: str, content: str,
                  author_name: str | None = None, created_at: str | None = None) -> None:
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            return
        if find_by_talkdesk_message_id(uow.session, conversation_id, talkdesk_message_id):
            return  # Talkdesk called twice with the same message id
        if conversation.state == ConversationState.CLOSED:
            add_message(uow.session, conversation_id, sender=Sender.AGENT, destination=Destination.NONE,
                        body=content, talkdesk_message_id=talkdesk_message_id, status=MessageStatus.SKIPPED,
                        last_error="conversation closed")
            return
        if conversation.state in (ConversationState.HANDOFF_REQUESTED, ConversationState.AGENT_QUEUED):
            # An agent who writes has joined, even if the join call has not reached us yet.
            _join(uow.session, conversation, author_name)
        payload = {"author": author_name} if author_name else {}
        if created_at:
            payload["agent_created_at"] = created_at
        add_message(uow.session, conversation_id, sender=Sender.AGENT, destination=Destination.CUSTOMER,
                    body=content, payload=payload, talkdesk_message_id=talkdesk_message_id)
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)


@app.task(name="routing.agent_closed")
def agent_closed(conversation_id: str, reason: str | None = None) -> None:
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is not None:
            close(uow, conversation, by="agent")


@app.task(name="routing.deliver")
def deliver(conversation_id: str) -> None:
    """Drain the conversation's pending frames to the node holding the customer's socket. With no
    socket they stay pending and go out, in order, when the customer resumes."""
    config = settings()

    def deliverable(session: Session) -> bool:
        live = exists().where(Connection.conversation_id == conversation_id, Connection.disconnected_at.is_(None))
        pending = exists().where(Message.conversation_id == conversation_id,
                                 Message.destination == Destination.CUSTOMER,
                                 Message.status == MessageStatus.PENDING)
        return bool(session.scalar(select(and_(live, pending))))

    def step() -> bool:
        with session_scope(config.database_url) as session:
            connection = current_connection(session, conversation_id)
            if connection is None:
                return False
            messages = session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.destination == Destination.CUSTOMER,
                       Message.status == MessageStatus.PENDING)
                .order_by(Message.frame_seq)
                .limit(FRAMES_PER_PUBLISH)
            ).all()
            if not messages:
                return False
            publish_frames(connection.node_id, conversation_id, connection.connection_id,
                           [customer_frame(m) for m in messages])
            now = utcnow()
            for message in messages:
                message.status = MessageStatus.SENT
                message.sent_at = now
                message.attempts += 1
            return True

    drain(config, conversation_id, Destination.CUSTOMER, step, pending=deliverable)
