"""Inbound events become rows before anything else happens to them (docs/design.md principle 1).

The entry points call these in the request that carried the event: the edge for the customer's
frames (a socket's frames are handled one after another, so `seq` follows the customer's order), the
callback app for Talkdesk's calls (Talkdesk waits for our 202 before its next call, so `seq` follows
the agent's order). Had they gone through a queue first, two workers could store two messages of
one conversation in either order. Follow-up work (drains, delivery) is published after commit
through the outbox; an answer of `accepted`/202 therefore means committed to the database.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import read_scope
from shared.domain import AGENT_SIDE_STATES, destination_for_customer_message
from shared.leases import lock_conversation
from shared.lifecycle import DELIVER, close
from shared.models import Conversation, ConversationState, Destination, Sender, utcnow
from shared.outbox import unit_of_work
from shared.redaction import redact_text
from shared.sealing import seal, stored_form
from shared.settings import Settings
from shared.store import add_event, add_message, find_by_client_message_id, find_by_talkdesk_message_id


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # the same id again: the first copy counted, this one has no effect
    CLOSED = "closed"
    UNKNOWN = "unknown"
    IGNORED = "ignored"
    TOO_LONG = "too_long"  # longer than the bot takes (Lex RecognizeText: 1024 characters)


LEX_MAX_TEXT = 1024


def customer_message(settings: Settings, conversation_id: str, client_message_id: str, text: str,
                     connection_id: str | None = None) -> Outcome:
    """`connection_id` is the socket the message came from: the conversation's other tabs are sent
    its echo (after the commit; it costs a read of the live sockets, and a publish only if there are
    others). None (not from a socket): no echo."""
    with unit_of_work(settings) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            return Outcome.UNKNOWN
        if find_by_client_message_id(uow.session, conversation_id, client_message_id):
            return Outcome.DUPLICATE
        destination = destination_for_customer_message(conversation.state)
        if destination is None:
            return Outcome.CLOSED
        if destination == Destination.LEX and len(text) > LEX_MAX_TEXT:
            return Outcome.TOO_LONG  # Lex would refuse it for good: say so now, while the customer is here
        body, sensitive = stored_form(text, conversation.eliciting_slot if destination == Destination.LEX else None)
        sealed = None
        if sensitive and destination == Destination.LEX:
            assert settings.data_key is not None, "the edge requires LEXDESK_DATA_KEY at start-up"
            sealed = seal(settings.data_key.get_secret_value(), text)
        message = add_message(uow.session, conversation_id, sender=Sender.CUSTOMER, destination=destination,
                              body=body, client_message_id=client_message_id, sealed_body=sealed)
        if connection_id is not None:
            uow.notices.echo(message, conversation.last_frame_seq, connection_id)
        uow.publish_after_commit(f"{destination}.drain", conversation_id=conversation_id)
        return Outcome.STORED


def customer_ended(settings: Settings, conversation_id: str) -> Outcome:
    return _close(settings, conversation_id, by="customer")


def _close(settings: Settings, conversation_id: str, by: str) -> Outcome:
    # Closed is final (shared/domain.py), so a plain read that finds it closed is already the answer:
    # no row lock and no write transaction for an `end` or close that repeats one, however many come.
    with read_scope(settings.database_url) as session:
        state = session.scalar(select(Conversation.state).where(Conversation.id == conversation_id))
    if state == ConversationState.CLOSED:
        return Outcome.CLOSED
    with unit_of_work(settings) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            return Outcome.UNKNOWN
        return Outcome.STORED if close(uow, conversation, by=by) else Outcome.CLOSED


# Talkdesk's events name the conversation by Talkdesk's id: it is looked up, locked and the event stored
# in one transaction (a lookup of its own would be a second commit for every agent message).


def agent_joined(settings: Settings, talkdesk_id: str, agent_name: str | None) -> Outcome:
    with unit_of_work(settings) as uow:
        conversation = lock_by_talkdesk_id(uow.session, talkdesk_id)
        if conversation is None:
            return Outcome.UNKNOWN
        conversation_id = conversation.id
        if conversation.state not in AGENT_SIDE_STATES:
            return Outcome.CLOSED if conversation.state == ConversationState.CLOSED else Outcome.IGNORED
        if conversation.state == ConversationState.AGENT_ACTIVE and conversation.agent_name == agent_name:
            return Outcome.DUPLICATE
        _join(uow.session, conversation, agent_name)
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
        return Outcome.STORED


def agent_message(settings: Settings, talkdesk_id: str, talkdesk_message_id: str, content: str,
                  author_name: str | None = None, created_at: str | None = None) -> Outcome:
    with unit_of_work(settings) as uow:
        conversation = lock_by_talkdesk_id(uow.session, talkdesk_id)
        if conversation is None:
            return Outcome.UNKNOWN
        conversation_id = conversation.id
        if find_by_talkdesk_message_id(uow.session, conversation_id, talkdesk_message_id):
            return Outcome.DUPLICATE
        if conversation.state == ConversationState.CLOSED:
            return Outcome.CLOSED
        if conversation.state in (ConversationState.HANDOFF_REQUESTED, ConversationState.AGENT_QUEUED):
            # An agent who writes has joined, even if the join call has not reached us yet.
            _join(uow.session, conversation, author_name)
        payload = {"author": author_name} if author_name else {}
        if created_at:
            payload["agent_created_at"] = created_at
        add_message(uow.session, conversation_id, sender=Sender.AGENT, destination=Destination.CUSTOMER,
                    body=content, payload=payload, talkdesk_message_id=talkdesk_message_id)
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
        return Outcome.STORED


def agent_typing(settings: Settings, talkdesk_id: str, active: bool) -> Outcome:
    """The agent started or stopped typing: an `agent_typing` event for the customer, in order with
    the agent's messages (a message implies the typing stopped; the page says so)."""
    with unit_of_work(settings) as uow:
        conversation = lock_by_talkdesk_id(uow.session, talkdesk_id)
        if conversation is None:
            return Outcome.UNKNOWN
        if conversation.state == ConversationState.CLOSED:
            return Outcome.CLOSED
        if conversation.state not in AGENT_SIDE_STATES:
            return Outcome.IGNORED
        fields: dict[str, object] = {"active": active}
        if conversation.agent_name:
            fields["author"] = conversation.agent_name
        add_event(uow.session, conversation.id, "agent_typing", **fields)
        uow.publish_after_commit(DELIVER, conversation_id=conversation.id)
        return Outcome.STORED


def customer_rated(settings: Settings, conversation_id: str, score: int, comment: str | None) -> Outcome:
    """The customer's rating of a chat an agent ended (asked for with `conversation_ended`'s
    `rating_requested`). Once: a second rating changes nothing."""
    with unit_of_work(settings) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            return Outcome.UNKNOWN
        if conversation.closed_by != "agent":
            return Outcome.IGNORED
        if conversation.rating is not None:
            return Outcome.DUPLICATE
        conversation.rating, conversation.rated_at = score, utcnow()
        conversation.rating_comment = redact_text(comment)[:2000] if comment else None
        add_event(uow.session, conversation_id, "rated", score=score)
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
        return Outcome.STORED


def agent_closed(settings: Settings, talkdesk_id: str) -> Outcome:
    with unit_of_work(settings) as uow:
        conversation = lock_by_talkdesk_id(uow.session, talkdesk_id)
        if conversation is None:
            return Outcome.UNKNOWN
        return Outcome.STORED if close(uow, conversation, by="agent") else Outcome.CLOSED


def lock_by_talkdesk_id(session: Session, talkdesk_id: str) -> Conversation | None:
    return session.scalars(
        select(Conversation).where(Conversation.talkdesk_conversation_id == talkdesk_id).with_for_update()
    ).one_or_none()


def _join(session: Session, conversation: Conversation, agent_name: str | None) -> None:
    conversation.state = ConversationState.AGENT_ACTIVE
    conversation.agent_name = agent_name
    add_event(session, conversation.id, "agent_joined", **({"author": agent_name} if agent_name else {}))

