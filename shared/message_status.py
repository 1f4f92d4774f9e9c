"""What became of a customer's message, told to the customer: `status` frames (docs/protocol.md §2).

The message row is the record: its status (`delivered`, `failed`, `skipped`) and its `delayed_at`. A
status frame is a notice of a change to that record. It is sent straight to the edge node holding the
customer's socket once the transaction that made the change has committed (`UnitOfWork.notify`), with
no `seq` and no row of its own. A notice the customer missed (no socket at the time, an edge node that
died) is not resent on its own: every resume sends the current status of the conversation's messages
again (`snapshot`), so a reconnected or reloaded page catches up. This keeps the notice off the hot
path's commit count: it costs one publish, no commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.edge_bus import publish_frames
from shared.models import Destination, Message, MessageStatus, Sender, as_utc
from shared.store import Socket, by_node, live_sockets

log = structlog.get_logger(__name__)

DELIVERED = "delivered"
DELAYED = "delayed"
FAILED = "failed"

# What a customer reads on a `failed` bubble, by why it failed (`Message.error_class`).
FAILED_DETAIL = {
    Destination.TALKDESK: "This message could not be delivered to the agent.",
    Destination.LEX: "The assistant could not answer this message.",
}
GONE_DETAIL = "The chat with the agent was disconnected. Ask for an agent again and it will be passed on."
SNAPSHOT_LIMIT = 200  # the newest customer messages whose status a resume sends again


def frame(message: Message, status: str, detail: str | None = None) -> dict[str, Any] | None:
    """The status frame for a customer's message; None for rows the customer did not send with an id."""
    if message.sender != Sender.CUSTOMER or not message.client_message_id:
        return None
    result: dict[str, Any] = {"type": "status", "id": message.client_message_id, "status": status}
    if detail:
        result["detail"] = detail
    return result


def failed_detail(message: Message) -> str:
    if message.error_class == "conversation_gone":
        return GONE_DETAIL
    return FAILED_DETAIL.get(Destination(message.destination), "This message could not be delivered.")


def current_status(message: Message) -> tuple[str, str | None] | None:
    """The status a customer's message has now, as a frame would say it; None while it is simply on
    its way (`accepted` said so already) or when there is nothing to tell (the chat ended first)."""
    if message.status == MessageStatus.DELIVERED:
        return DELIVERED, None
    if message.status == MessageStatus.FAILED:
        return FAILED, failed_detail(message)
    if message.status == MessageStatus.SKIPPED:
        if message.error_class in ("conversation_gone", "handoff_failed"):
            return FAILED, GONE_DETAIL
        if message.destination == Destination.LEX and message.error_class == "handed_over":
            return DELIVERED, None  # typed as the handoff started: the agent gets it with the transcript
        return None
    if message.status == MessageStatus.PENDING and message.delayed_at is not None:
        return DELAYED, None
    return None


def current_frame(message: Message) -> dict[str, Any] | None:
    """The status frame saying what a customer's message has become by now, if there is one to send."""
    status = current_status(message)
    return frame(message, *status) if status is not None else None


@dataclass
class Notices:
    """Frames for customers gathered in one transaction, addressed in it, published after it commits:
    status frames, and the echo of a customer's message for the conversation's other tabs. Each frame
    goes to every live native socket of its conversation (the Lex Web UI's dialect has neither), except
    the one an echo came from."""

    # conversation id -> [(frame, the socket that must not get it)]
    frames: dict[str, list[tuple[dict[str, Any], str | None]]] = field(default_factory=dict)
    sockets: dict[str, list[Socket]] = field(default_factory=dict)  # conversation id -> its live sockets

    def add(self, message: Message, status: str, detail: str | None = None) -> None:
        notice = frame(message, status, detail)
        if notice is not None:
            self.frames.setdefault(message.conversation_id, []).append((notice, None))

    def add_current(self, messages: Iterable[Message]) -> None:
        for message in messages:
            notice = current_frame(message)
            if notice is not None:
                self.frames.setdefault(message.conversation_id, []).append((notice, None))

    def echo(self, message: Message, after_seq: int, from_connection: str | None) -> None:
        """The customer's message, for the conversation's other tabs (docs/protocol.md §2 `echo`)."""
        notice = echo_frame(message, after_seq)
        if notice is not None:
            self.frames.setdefault(message.conversation_id, []).append((notice, from_connection))

    def address(self, session: Session) -> None:
        """In the transaction: the sockets each conversation has now."""
        for conversation_id in self.frames:
            native = [s for s in live_sockets(session, conversation_id) if s.dialect == "native"]
            if native:
                self.sockets[conversation_id] = native

    def publish(self) -> None:
        """After the commit: one publish per edge node, plus one for a socket that must miss its own
        echo. A failure is logged, never raised: the change has committed, and the next resume tells
        the customer again."""
        for conversation_id, sockets in self.sockets.items():
            entries = self.frames[conversation_id]
            excluded = {skip for _, skip in entries if skip is not None}
            for node_id, connection_ids in by_node(sockets).items():
                self._send(node_id, conversation_id, [c for c in connection_ids if c not in excluded],
                           [notice for notice, _ in entries])
                for connection_id in excluded.intersection(connection_ids):
                    self._send(node_id, conversation_id, [connection_id],
                               [notice for notice, skip in entries if skip != connection_id])

    @staticmethod
    def _send(node_id: str, conversation_id: str, connection_ids: list[str], frames: list[dict[str, Any]]) -> None:
        if not connection_ids or not frames:
            return
        try:
            publish_frames(node_id, conversation_id, connection_ids, frames)
        except Exception as exc:
            log.warning("notice_publish_failed", conversation_id=conversation_id, error=repr(exc))


def echo_frame(message: Message, after_seq: int) -> dict[str, Any] | None:
    """A customer's message as another tab shows it: as stored (card data masked), after frame
    `after_seq`; None for rows the customer did not send with an id."""
    if message.sender != Sender.CUSTOMER or not message.client_message_id:
        return None
    return {"type": "echo", "id": message.client_message_id, "text": message.body,
            "at": as_utc(message.created_at).strftime("%Y-%m-%dT%H:%M:%SZ"), "after_seq": after_seq}


@dataclass(frozen=True)
class Delay:
    """A destination's messages reported delayed and still pending: an outage in progress."""

    messages: int
    oldest_accepted_at: datetime
    last_error: str | None

    def describe(self, now: datetime) -> str:
        waited = (now - as_utc(self.oldest_accepted_at)).total_seconds()
        error = f" (last error: {self.last_error[:160]})" if self.last_error else ""
        return f"delayed: {self.messages} message(s) failing, the oldest accepted {waited:.0f}s ago{error}"


def delays(session: Session) -> dict[str, Delay]:
    """Per destination (lex, talkdesk), what is delayed now; read by /readyz and the metrics."""
    result: dict[str, Delay] = {}
    delayed = (Message.delayed_at.is_not(None), Message.status == MessageStatus.PENDING)
    for destination, count, oldest in session.execute(
        select(Message.destination, func.count(), func.min(Message.created_at)).where(*delayed)
        .group_by(Message.destination)
    ):
        last_error = session.scalar(
            select(Message.last_error).where(*delayed, Message.destination == destination,
                                             Message.last_error.is_not(None))
            .order_by(Message.created_at.desc()).limit(1))
        result[destination] = Delay(count, oldest, last_error)
    return result


def snapshot(session: Session, conversation_id: str, notices: Notices) -> None:
    """On resume: the current status of the conversation's newest customer messages, for every socket."""
    notices.add_current(_newest_customer_messages(session, conversation_id))


def snapshot_frames(session: Session, conversation_id: str) -> list[dict[str, Any]]:
    """On resume: the same, as frames for the one socket that resumed."""
    return [notice for message in _newest_customer_messages(session, conversation_id)
            if (notice := current_frame(message)) is not None]


def _newest_customer_messages(session: Session, conversation_id: str) -> list[Message]:
    messages: Sequence[Message] = session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.sender == Sender.CUSTOMER,
               Message.client_message_id.is_not(None))
        .order_by(Message.seq.desc())
        .limit(SNAPSHOT_LIMIT)
    ).all()
    return list(reversed(messages))
