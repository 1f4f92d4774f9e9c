"""State changes of a conversation, each within the caller's unit of work: the transition check
(shared/domain.py), the transcript rows it implies, and the follow-up tasks to publish on commit."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.domain import check_transition
from shared.message_status import FAILED, GONE_DETAIL
from shared.models import Conversation, ConversationState, Destination, Message, MessageStatus, Sender, utcnow
from shared.outbox import UnitOfWork
from shared.store import add_event, add_message

DELIVER = "routing.deliver"
LEX_DRAIN = "lex.drain"
TALKDESK_DRAIN = "talkdesk.drain"
STILL_WAITING = "timers.still_waiting"


def request_handoff(uow: UnitOfWork, conversation: Conversation) -> None:
    """Queue the Talkdesk 'start conversation' call behind everything already bound for Talkdesk."""
    conversation.state = check_transition(conversation.state, ConversationState.HANDOFF_REQUESTED)
    add_event(uow.session, conversation.id, "handoff_requested")
    add_message(uow.session, conversation.id, sender=Sender.SYSTEM, destination=Destination.TALKDESK,
                kind="event", event="handoff_requested")
    uow.publish_after_commit(TALKDESK_DRAIN, conversation_id=conversation.id)
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)


def fail_handoff(uow: UnitOfWork, conversation: Conversation, reason: str) -> None:
    """Talkdesk could not be reached within the retry bound: tell the customer, back to the bot."""
    conversation.state = check_transition(conversation.state, ConversationState.HANDOFF_FAILED)
    add_event(uow.session, conversation.id, "handoff_failed", reason=reason)
    add_message(uow.session, conversation.id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER,
                body="Sorry, we could not reach an agent right now. You can keep chatting with the assistant "
                     "or ask for an agent again.")
    # Messages typed while the handoff was pending cannot reach an agent now; they stay in the
    # transcript, marked so, instead of being sent to a conversation that does not exist, and go to
    # the agent of the next handoff with the rest of it.
    _skip_pending_and_tell(uow, conversation.id, "handoff failed", error_class="handoff_failed")
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)


def lose_agent_conversation(uow: UnitOfWork, conversation: Conversation, reason: str) -> bool:
    """Talkdesk no longer knows the conversation (expired or removed on its side): not a dead end. The
    customer is told and is back with the bot; asking for an agent again starts a new Talkdesk
    conversation whose transcript holds everything, the messages that did not get through included.
    False if the conversation is not with Talkdesk any more (closed meanwhile)."""
    if conversation.state not in (ConversationState.AGENT_QUEUED, ConversationState.AGENT_ACTIVE):
        return False
    conversation.state = check_transition(conversation.state, ConversationState.HANDOFF_FAILED)
    conversation.talkdesk_conversation_id = None
    conversation.agent_name = None
    add_event(uow.session, conversation.id, "handoff_failed", reason="agent_conversation_gone")
    add_message(uow.session, conversation.id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER,
                body="The chat with the agent was disconnected on their side. Your messages are kept: ask for "
                     "an agent again and a new agent will see the whole conversation.")
    _skip_pending_and_tell(uow, conversation.id, f"Talkdesk conversation gone: {reason}"[:2000],
                           error_class="conversation_gone")
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)
    return True


def _skip_pending_and_tell(uow: UnitOfWork, conversation_id: str, reason: str, error_class: str) -> None:
    """The conversation's messages bound for Talkdesk that cannot go now: kept in the transcript, marked,
    and each sender told (`failed`)."""
    rows = uow.session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.destination == Destination.TALKDESK,
               Message.status == MessageStatus.PENDING)
        .order_by(Message.seq)
    ).all()
    for message in rows:
        message.status, message.last_error, message.error_class = MessageStatus.SKIPPED, reason, error_class
        message.sealed_body = None
        uow.notify(message, FAILED, GONE_DETAIL)


def close(uow: UnitOfWork, conversation: Conversation, by: str) -> bool:
    """End the conversation; the other side is always told. False if it was closed already."""
    if conversation.state == ConversationState.CLOSED:
        return False
    previous = conversation.state
    conversation.state = check_transition(previous, ConversationState.CLOSED)
    conversation.closed_by = by
    conversation.closed_at = utcnow()
    session = uow.session
    # Whatever the bot has not answered yet will not be answered, nor will the rest of an answer it
    # was still pacing out (shared/pacing.py).
    _skip_pending(session, conversation.id, Destination.LEX, f"conversation closed by {by}")
    session.execute(
        update(Message)
        .where(Message.conversation_id == conversation.id, Message.destination == Destination.NONE,
               Message.status == MessageStatus.HELD)
        .values(status=MessageStatus.SKIPPED, last_error=f"conversation closed by {by}")
    )
    if by == "agent":
        # Talkdesk has ended its side; sending there now would only earn 3016011.
        _skip_pending(session, conversation.id, Destination.TALKDESK, "conversation closed by agent")
    add_event(session, conversation.id, "conversation_ended", by=by)
    talkdesk_involved = previous in (ConversationState.HANDOFF_REQUESTED, ConversationState.AGENT_QUEUED,
                                     ConversationState.AGENT_ACTIVE)
    if by != "agent" and talkdesk_involved:
        # Queued behind the customer's last messages, so the agent sees them before the end.
        add_message(session, conversation.id, sender=Sender.SYSTEM, destination=Destination.TALKDESK,
                    kind="event", event="conversation_ended", payload={"by": by})
        uow.publish_after_commit(TALKDESK_DRAIN, conversation_id=conversation.id)
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)
    return True


def _skip_pending(session: Session, conversation_id: str, destination: Destination, reason: str,
                  error_class: str | None = None) -> None:
    """Rows that will never go out stay in the transcript, marked so (and without a sealed copy)."""
    values: dict[str, object] = {"status": MessageStatus.SKIPPED, "last_error": reason, "sealed_body": None}
    if error_class is not None:
        values["error_class"] = error_class
    session.execute(
        update(Message)
        .where(Message.conversation_id == conversation_id, Message.destination == destination,
               Message.status == MessageStatus.PENDING)
        .values(**values)
    )
