"""Queue `talkdesk`: everything bound for Talkdesk, in seq order: the handoff (start a conversation
with the bot transcript), the customer's messages, and the end of the conversation. Beside them, out
of that order and best effort, the customer's typing."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from celery import Task
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.clients.errors import ConversationEndedError, ConversationGoneError, DeliveryError, classified
from shared.clients.factory import talkdesk_client
from shared.db import read_scope, session_scope
from shared.domain import handoff_request
from shared.leases import Lease, lock_conversation
from shared.leases import drain as drain_with_lease
from shared.lifecycle import close, fail_handoff, lose_agent_conversation, queue_for_agent
from shared.message_status import DELIVERED
from shared.models import Conversation, ConversationState, Destination, Message, MessageStatus, utcnow
from shared.outbox import unit_of_work
from shared.store import lock_message, next_pending, transcript_lines
from workers.base import Failure, LexdeskTask, RetryLater, app, log, record_failure, retry_drain, settings


@app.task(name="talkdesk.drain", bind=True, base=LexdeskTask)
def drain(self: Task, conversation_id: str, lease_holder: str | None = None) -> None:
    try:
        drain_with_lease(settings(), conversation_id, Destination.TALKDESK,
                         lambda lease: _step(conversation_id, lease), holder=lease_holder)
    except RetryLater as exc:
        retry_drain(self, exc)


@app.task(name="talkdesk.customer_typing", ignore_result=True)
def customer_typing(conversation_id: str, active: bool) -> None:
    """The customer started or stopped typing: told to the agent, if one has the chat. Best effort and
    not stored: a typing indicator is stale within seconds, so a failed call is logged and dropped, never
    retried (the edge sends `true` again every few seconds while the customer types, and the agent's
    side lets one lapse by itself), and the edge publishes it with an expiry, so a backlog drops it."""
    config = settings()
    if not config.forward_customer_typing:
        return
    with read_scope(config.database_url) as session:
        row = session.execute(select(Conversation.state, Conversation.talkdesk_conversation_id)
                              .where(Conversation.id == conversation_id)).one_or_none()
    if row is None or row.state != ConversationState.AGENT_ACTIVE or not row.talkdesk_conversation_id:
        return
    try:
        with classified("Talkdesk customer typing"):
            talkdesk_client().customer_typing(row.talkdesk_conversation_id, active)
    except DeliveryError as exc:
        log.info("customer_typing_not_forwarded", conversation_id=conversation_id, error=str(exc)[:200])


def _step(conversation_id: str, lease: Lease) -> None:
    """One message: read it (taking the lease), call Talkdesk, record the outcome (settling the lease)."""
    config = settings()
    with session_scope(config.database_url) as session:
        conversation = lease.take(session)
        if conversation is None:
            return
        message = next_pending(session, conversation_id, Destination.TALKDESK)
        if message is None:
            lease.give_back(session)
            return
        message_id, event, body = message.id, message.event, message.body
        end_of = message.payload.get("talkdesk_id") if event == "conversation_ended" else None
        # Globally unique and stable across retries and replays: the conversation's UUID and the row's
        # place in it (a row id would repeat across databases sharing one Talkdesk account).
        idempotency_key = f"lexdesk-{conversation_id}-{message.seq}"
        talkdesk_id = conversation.talkdesk_conversation_id
        if event is None and talkdesk_id is None:
            # Only reachable after a failed handoff skipped what was queued behind it.
            message.status = MessageStatus.SKIPPED
            message.last_error = "no Talkdesk conversation to send to"
            lease.settle(session, locked=True)
            return
        start_body = _handoff_body(session, conversation, message) if event == "handoff_requested" else None
    client = talkdesk_client()
    try:
        if event == "handoff_requested":
            assert start_body is not None
            with classified("Talkdesk start conversation"):
                talkdesk_id = client.start_conversation(start_body, idempotency_key=idempotency_key)
            _handoff_done(conversation_id, message_id, talkdesk_id, lease)
        elif event == "conversation_ended":
            # The id the end was queued for (rows of earlier versions name none: the conversation's).
            ending = end_of or talkdesk_id
            if ending is not None:
                _end_quietly(ending)
            _mark_delivered(message_id, lease)
        else:
            assert talkdesk_id is not None
            with classified("Talkdesk send message"):
                sent = client.send_message(talkdesk_id, body, idempotency_key=idempotency_key)
            _mark_delivered(message_id, lease, sent.message_id or sent.id)
    except ConversationGoneError as error:
        # Not a dead letter: the conversation goes back to the bot, and what could not be sent goes to
        # the agent of the next handoff with the rest of the transcript.
        log.warning("talkdesk_conversation_gone", conversation_id=conversation_id, talkdesk_id=talkdesk_id,
                    error=str(error)[:300])
        with unit_of_work(config) as uow:
            lost = lock_conversation(uow.session, conversation_id)
            if lost is not None:
                lose_agent_conversation(uow, lost, reason=str(error)[:300])
            lease.settle(uow.session, locked=lost is not None)
    except ConversationEndedError as error:
        record_failure(message_id, error)
        with unit_of_work(config) as uow:
            ended = lock_conversation(uow.session, conversation_id)
            if ended is not None:
                close(uow, ended, by="agent")  # settles every pending row: nothing is left to drain
            lease.settle(uow.session, locked=ended is not None)
    except DeliveryError as error:
        outcome, _ = record_failure(message_id, error, lease)  # raises RetryLater for a retry
        if outcome == Failure.DEAD and event == "handoff_requested":
            with unit_of_work(config) as uow:
                conversation = lock_conversation(uow.session, conversation_id)
                if conversation is not None and conversation.state == ConversationState.HANDOFF_REQUESTED:
                    fail_handoff(uow, conversation, reason=error.error_class)


def _handoff_body(session: Session, conversation: Conversation, handoff: Message) -> dict[str, Any]:
    earlier = session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation.id, Message.seq < handoff.seq)
        .order_by(Message.seq)
    ).all()
    return handoff_request(
        touchpoint_id=talkdesk_client().credentials.touchpoint_id,
        customer_name=conversation.customer_name,
        customer_email=conversation.customer_email,
        attributes=conversation.attributes,
        transcript=transcript_lines(earlier),
    )


def _handoff_done(conversation_id: str, message_id: int, talkdesk_id: str, lease: Lease) -> None:
    with unit_of_work(settings()) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            lease.settle(uow.session)
            return
        _set_delivered(uow.session.get_one(Message, message_id), talkdesk_id)
        conversation.talkdesk_conversation_id = talkdesk_id
        if conversation.state == ConversationState.HANDOFF_REQUESTED:
            queue_for_agent(uow, conversation)
        elif conversation.state == ConversationState.CLOSED:
            # The customer left while the handoff was in flight: the end row queued behind it ends it.
            # (A message left outside business hours by a customer who ended the chat has none: the
            # agent reads it and answers by other means; shared/left_messages.py.)
            log.info("handoff_completed_after_close", conversation_id=conversation_id)
        lease.settle(uow.session, locked=True)


def _end_quietly(talkdesk_id: str) -> None:
    with suppress(ConversationEndedError, ConversationGoneError), classified("Talkdesk end conversation"):
        # Ended on the Talkdesk side already, or no longer known there: what we wanted.
        talkdesk_client().end_conversation(talkdesk_id)


def _mark_delivered(message_id: int, lease: Lease, talkdesk_message_id: str | None = None) -> None:
    with unit_of_work(settings()) as uow:
        # The conversation's row lock first, then its message's: the order every writer takes them in.
        locked = lock_conversation(uow.session, lease.conversation_id) is not None
        message = lock_message(uow.session, message_id)
        if _set_delivered(message, talkdesk_message_id):
            uow.notify(message, DELIVERED)
        lease.settle(uow.session, locked=locked)


def _set_delivered(message: Message, external_id: str | None) -> bool:
    if message.status != MessageStatus.PENDING:
        return False  # settled meanwhile by a drain that took over an expired lease
    message.status = MessageStatus.DELIVERED
    message.delivered_at = utcnow()
    message.attempts += 1
    if external_id:
        message.payload = {**message.payload, "talkdesk_id": external_id}
    return True
