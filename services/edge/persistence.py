"""The edge's few database operations (run in a thread pool, never on the event loop): open a
conversation, attach a socket to one, detach it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.db import session_scope
from shared.models import Conversation, ConversationState, as_utc, utcnow
from shared.protocol import Hello
from shared.store import (
    Socket,
    attach_connection,
    create_conversation,
    detach_connection,
    detach_node,
    live_sockets,
)


@dataclass(frozen=True)
class Attached:
    conversation_id: str
    state: str
    last_frame_seq: int
    acked_frame_seq: int = 0
    # The oldest sockets this one replaced (beyond LEXDESK_MAX_SOCKETS_PER_CONVERSATION): they are told,
    # then closed. The others stay, and show the conversation too.
    superseded: tuple[Socket, ...] = ()
    others: tuple[Socket, ...] = ()  # the conversation's other live sockets: told how many tabs it is open in


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


def attach(url: str, conversation_id: str, connection_id: str, node_id: str,
           dialect: str = "native", closed_grace: float | None = None, max_sockets: int = 1) -> Attached | None:
    """This socket becomes one of the conversation's live sockets; None if there is no such conversation,
    or it ended more than `closed_grace` seconds ago (a reload right after the end still shows it; a
    token kept for later no longer opens the transcript)."""
    with session_scope(url) as session:
        # Locked: concurrent resumes of one conversation count its sockets one after another, so a flood
        # of them cannot leave more than max_sockets live.
        conversation = session.get(Conversation, conversation_id, with_for_update=True)
        if conversation is None:
            return None
        if closed_grace is not None and _closed_before(conversation, utcnow() - timedelta(seconds=closed_grace)):
            return None
        attachment = attach_connection(session, conversation_id, connection_id, node_id, dialect=dialect,
                                       max_sockets=max_sockets)
        return Attached(conversation.id, conversation.state, conversation.last_frame_seq,
                        conversation.acked_frame_seq, tuple(attachment.replaced), tuple(attachment.others))


def _closed_before(conversation: Conversation, cutoff: datetime) -> bool:
    return (conversation.state == ConversationState.CLOSED and conversation.closed_at is not None
            and as_utc(conversation.closed_at) < cutoff)


def forget_node(url: str, node_id: str) -> int:
    with session_scope(url) as session:
        return detach_node(session, node_id)


def detach(url: str, connection_id: str, conversation_id: str) -> list[Socket]:
    """The socket is gone; the conversation's sockets that remain (to be told how many tabs are left)."""
    with session_scope(url) as session:
        detach_connection(session, connection_id)
        return live_sockets(session, conversation_id)
