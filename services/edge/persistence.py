"""The edge's few database operations (run in a thread pool, never on the event loop): open a
conversation, attach a socket to one, detach it."""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import session_scope
from shared.models import Conversation, ConversationState
from shared.protocol import Hello
from shared.store import (
    attach_connection,
    conversation_by_talkdesk_id,
    create_conversation,
    detach_connection,
    detach_node,
)


@dataclass(frozen=True)
class Attached:
    conversation_id: str
    state: str
    last_frame_seq: int


def open_conversation(url: str, hello: Hello, connection_id: str, node_id: str) -> Attached:
    with session_scope(url) as session:
        customer = hello.customer
        conversation = create_conversation(
            session,
            customer_name=customer.name if customer else None,
            customer_email=customer.email if customer else None,
            locale=hello.locale,
            attributes=hello.attributes,
        )
        attach_connection(session, conversation.id, connection_id, node_id)
        return Attached(conversation.id, conversation.state, 0)


def attach(url: str, conversation_id: str, connection_id: str, node_id: str) -> Attached | None:
    with session_scope(url) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            return None
        attach_connection(session, conversation_id, connection_id, node_id)
        return Attached(conversation.id, conversation.state, conversation.last_frame_seq)


def adopt_talkdesk_conversation(url: str, talkdesk_id: str, connection_id: str, node_id: str) -> Attached:
    """The conversation with this Talkdesk id (created if lexdesk has not seen it: see lexwebui.py),
    with this socket attached."""
    with session_scope(url) as session:
        conversation = conversation_by_talkdesk_id(session, talkdesk_id)
        if conversation is None:
            conversation = create_conversation(session)
            conversation.state = ConversationState.AGENT_QUEUED
            conversation.talkdesk_conversation_id = talkdesk_id
            session.flush()
        attach_connection(session, conversation.id, connection_id, node_id, dialect="lexwebui")
        return Attached(conversation.id, conversation.state, conversation.last_frame_seq)


def forget_node(url: str, node_id: str) -> int:
    with session_scope(url) as session:
        return detach_node(session, node_id)


def detach(url: str, connection_id: str) -> None:
    with session_scope(url) as session:
        detach_connection(session, connection_id)
