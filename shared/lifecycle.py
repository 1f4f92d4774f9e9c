"""State changes of a conversation, each within the caller's unit of work: the transition check
(shared/domain.py), the transcript rows it implies, and the follow-up tasks to publish on commit."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import transcript_links
from shared.domain import AGENT_SIDE_STATES, check_transition
from shared.message_status import FAILED, GONE_DETAIL
from shared.models import Conversation, ConversationState, Destination, Message, MessageStatus, Sender, utcnow
from shared.outbox import UnitOfWork
from shared.settings import get_settings
from shared.store import add_event, add_message, next_pending

DELIVER = "routing.deliver"
LEX_DRAIN = "lex.drain"
TALKDESK_DRAIN = "talkdesk.drain"
STILL_WAITING = "timers.still_waiting"
AGENT_QUEUE = "timers.agent_queue"
# The error class of a customer message left for the agents outside business hours, not for the bot
# (shared/left_messages.py); like `handed_over`, it reaches the agent in the handed-over transcript.
LEFT_MESSAGE = "left_message"


def request_handoff(uow: UnitOfWork, conversation: Conversation) -> None:
    """Queue the Talkdesk 'start conversation' call behind everything already bound for Talkdesk."""
    conversation.state = check_transition(conversation.state, ConversationState.HANDOFF_REQUESTED)
    add_event(uow.session, conversation.id, "handoff_requested")
    queue_talkdesk_start(uow, conversation.id)
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)


def queue_talkdesk_start(uow: UnitOfWork, conversation_id: str) -> None:
    """The row the talkdesk drain turns into 'start a conversation' with the transcript before it."""
    add_message(uow.session, conversation_id, sender=Sender.SYSTEM, destination=Destination.TALKDESK,
                kind="event", event="handoff_requested")
    uow.publish_after_commit(TALKDESK_DRAIN, conversation_id=conversation_id)


def mark_left_message(conversation: Conversation, message: Message) -> None:
    """The customer's message for the agents, written outside business hours: kept in the transcript,
    never sent to the bot, and handed over with the transcript at the opening (shared/left_messages.py)."""
    message.status, message.error_class = MessageStatus.SKIPPED, LEFT_MESSAGE
    message.last_error = "left for an agent outside business hours"
    message.sealed_body = None
    conversation.left_message_at = utcnow()


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


def queue_for_agent(uow: UnitOfWork, conversation: Conversation) -> None:
    """Talkdesk took the handoff: the conversation waits for an agent, and the customer hears from the
    queue while it does (timers.agent_queue)."""
    conversation.state = check_transition(conversation.state, ConversationState.AGENT_QUEUED)
    conversation.queued_at = utcnow()
    add_event(uow.session, conversation.id, "agent_queued")
    uow.publish_after_commit(AGENT_QUEUE, conversation_id=conversation.id, updates_sent=0)
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)


def give_up_waiting(uow: UnitOfWork, conversation: Conversation, waited: float) -> None:
    """No agent took the chat within LEXDESK_QUEUE_TIMEOUT: end the Talkdesk conversation (queued
    behind what was sent there), tell the customer, and hand them back to the bot."""
    talkdesk_id = conversation.talkdesk_conversation_id
    conversation.state = check_transition(conversation.state, ConversationState.HANDOFF_FAILED)
    conversation.talkdesk_conversation_id = None
    add_event(uow.session, conversation.id, "handoff_failed", reason="queue_timeout")
    minutes = max(1, round(waited / 60))
    add_message(uow.session, conversation.id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER,
                body=f"Sorry, no agent could take your chat within {minutes} minute{'s' if minutes > 1 else ''}. "
                     "You are back with the assistant; you can ask for an agent again at any time.")
    _skip_pending_and_tell(uow, conversation.id, "no agent took the chat", error_class="handoff_failed")
    if talkdesk_id:
        _end_at_talkdesk(uow, conversation.id, "timeout", talkdesk_id)
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)


def _end_at_talkdesk(uow: UnitOfWork, conversation_id: str, by: str, talkdesk_id: str | None) -> None:
    """Queue the end of the Talkdesk conversation behind what is already bound there (so the agent
    sees the customer's last messages first). The row names the Talkdesk conversation it ends: the
    conversation may let go of that id before the row is drained (a queue timeout)."""
    add_message(uow.session, conversation_id, sender=Sender.SYSTEM, destination=Destination.TALKDESK,
                kind="event", event="conversation_ended", payload={"by": by, "talkdesk_id": talkdesk_id})
    uow.publish_after_commit(TALKDESK_DRAIN, conversation_id=conversation_id)


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
    if conversation.leave_message_requested_at is not None and conversation.left_message_at is None:
        # The customer typed their message for the agents and ended the chat before the lex worker took
        # it: it is the left message all the same, and still reaches an agent at the opening.
        left = next_pending(session, conversation.id, Destination.LEX)
        if left is not None and left.sender == Sender.CUSTOMER:
            mark_left_message(conversation, left)
    # Whatever the bot has not answered yet will not be answered, nor will the rest of an answer it
    # was still pacing out (shared/pacing.py).
    _skip_pending(session, conversation.id, Destination.LEX, f"conversation closed by {by}")
    _skip_pending(session, conversation.id, Destination.NONE, f"conversation closed by {by}",
                  status=MessageStatus.HELD)
    if by == "agent":
        # Talkdesk has ended its side; sending there now would only earn 3016011.
        _skip_pending(session, conversation.id, Destination.TALKDESK, "conversation closed by agent")
    ended: dict[str, object] = {"by": by}
    link = _transcript_link(conversation.id)
    if link:
        ended["transcript_url"] = link
    if by == "agent":
        # The bot is back after the agent, for the rating (docs/protocol.md §2 `rating`), before the
        # end: the socket closes after `conversation_ended`, and a rating comes on one resumed for it.
        ended["rating_requested"] = True
        add_message(session, conversation.id, sender=Sender.BOT, destination=Destination.CUSTOMER,
                    body=f"Thanks for chatting with {conversation.agent_name or 'us'}. How would you rate this chat, "
                         "from 1 (poor) to 5 (great)?", payload={"rating_prompt": True})
    add_event(session, conversation.id, "conversation_ended", **ended)
    talkdesk_involved = previous in AGENT_SIDE_STATES
    if by != "agent" and talkdesk_involved:
        _end_at_talkdesk(uow, conversation.id, by, conversation.talkdesk_conversation_id)
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)
    return True


def _transcript_link(conversation_id: str) -> str | None:
    """A link for the customer to download the transcript; None where this process has no secret to
    sign it with (it is the resume-token secret, which every edge node and the callback app have)."""
    config = get_settings()
    if config.resume_token_secret is None:
        return None
    return transcript_links.issue(config.resume_token_secret.get_secret_value(), conversation_id,
                                  config.transcript_link_ttl)


def _skip_pending(session: Session, conversation_id: str, destination: Destination, reason: str,
                  error_class: str | None = None, status: MessageStatus = MessageStatus.PENDING) -> None:
    """Rows that will never go out stay in the transcript, marked so (and without a sealed copy);
    `status`: which rows (pending ones, or the held rest of a paced bot answer)."""
    values: dict[str, object] = {"status": MessageStatus.SKIPPED, "last_error": reason, "sealed_body": None}
    if error_class is not None:
        values["error_class"] = error_class
    session.execute(
        update(Message)
        .where(Message.conversation_id == conversation_id, Message.destination == destination,
               Message.status == status)
        .values(**values)
    )
