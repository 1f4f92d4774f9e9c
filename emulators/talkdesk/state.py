"""The emulator's records: tokens, conversations, idempotent responses and counters.

They live in memory; with a state file (persistence.py) every change is also written through, so a
restarted emulator carries on where the previous one stopped. The counters (`Stats`) are per process.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .persistence import StateFile

ConversationStatus = Literal["open", "ended"]
EndedBy = Literal["customer", "agent"]
Delivery = Literal["queued", "delivered", "failed", "dropped", "not_sent"]


def now_iso() -> str:
    """UTC time as Talkdesk writes it: 24 characters, milliseconds, `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Token:
    value: str
    client_id: str
    scope: str
    expires_at: float

    def expired(self) -> bool:
        return time.time() >= self.expires_at


@dataclass
class CustomerMessage:
    seq: int
    message_id: str
    content: str
    attachments: list[Any]
    created_at: str
    idempotency_key: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "message_id": self.message_id,
            "content": self.content,
            "attachments": self.attachments,
            "created_at": self.created_at,
            "idempotency_key": self.idempotency_key,
        }


@dataclass
class AgentMessage:
    seq: int
    id: str
    content: str
    author_name: str
    source: Literal["scripted", "console"]
    queued_at: str
    created_at: str | None = None
    delivery: Delivery = "queued"

    def payload(self) -> dict[str, Any]:
        """The callback body lexdesk receives."""
        return {
            "id": self.id,
            "content": self.content,
            "author_name": self.author_name,
            "created_at": self.created_at,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.payload(),
            "seq": self.seq,
            "source": self.source,
            "queued_at": self.queued_at,
            "delivery": self.delivery,
        }


@dataclass
class Conversation:
    id: str
    created_at: str
    request: dict[str, Any]
    idempotency_key: str | None
    status: ConversationStatus = "open"
    ended_by: EndedBy | None = None
    ended_at: str | None = None
    closing: bool = False
    close_scripted: bool = False
    """Whether the pending close (while `closing`) is the scripted agent's, which a take-over cancels."""
    taken_over: bool = False
    callback_in_flight: Literal["join", "close"] | None = None
    """A join or close already in effect whose callback is still going out: a conversation saved meanwhile
    (by another call) tells a restarted emulator to send that callback again."""
    agent_name: str | None = None
    """Who joined, or is joining, the conversation: the scripted agent, or the person who took it at
    /console; None while nobody has (`agent_joined_at` says when the join went out)."""
    agent_joined_at: str | None = None
    customer_messages: list[CustomerMessage] = field(default_factory=list)
    agent_messages: list[AgentMessage] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        # time.monotonic() until which the customer counts as typing; None: not typing. Set here rather
        # than declared as a field, so dataclasses.asdict() (the state file's document) leaves it out:
        # customer typing is ephemeral, and a monotonic deadline means nothing to another process. A
        # conversation read back from a state file starts with nobody typing.
        self.customer_typing_until: float | None = None

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def customer_typing(self, now: float | None = None) -> bool:
        """Whether the customer is typing: said so, less than the typing ttl ago, in an open conversation.
        A "true" that is never followed by a "false" (lost, or the customer went away) lapses by itself."""
        if self.status != "open" or self.customer_typing_until is None:
            return False
        return (time.monotonic() if now is None else now) < self.customer_typing_until

    def set_customer_typing(self, active: bool, ttl: float, reason: str = "stopped") -> bool:
        """Start (or refresh, for `ttl` seconds more) or stop the customer's typing. Only a change is
        recorded: lexdesk refreshes "true" every few seconds while the customer types, and an event per
        refresh would bury the rest of the record. Whether something was recorded (the caller saves then).

        A lapsed "true" is not recorded as stopped (nobody notices it lapse), so two "true" events in a row
        mean the first one lapsed.
        """
        now = time.monotonic()
        was = self.customer_typing(now)
        self.customer_typing_until = now + ttl if active else None
        if active == was:
            return False
        if active:
            self.record("customer_typing", active=True)
        else:
            self.record("customer_typing", active=False, reason=reason)
        return True

    def record(self, kind: str, **detail: Any) -> None:
        self.events.append({"at": now_iso(), "type": kind, **detail})

    def end(self, by: EndedBy) -> None:
        self.status = "ended"
        self.ended_by = by
        self.ended_at = now_iso()
        self.closing = False
        self.customer_typing_until = None  # nobody is typing into an ended conversation
        self.record("ended", by=by)

    def summary(self) -> dict[str, Any]:
        context = self.request.get("context_parameters") or {}
        contact = self.request.get("contact_person") or {}
        return {
            "id": self.id,
            "status": self.status,
            "ended_by": self.ended_by,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "subject": self.request.get("subject"),
            "contact": {
                "email": contact.get("email") if isinstance(contact, dict) else None,
                "name": context.get("contact_name") if isinstance(context, dict) else None,
            },
            "customer_messages": len(self.customer_messages),
            "agent_messages": len(self.agent_messages),
            "taken_over": self.taken_over,
            "closing": self.closing,
            "agent_joined": self.agent_joined_at is not None,
            "agent_name": self.agent_name,
            "customer_typing": self.customer_typing(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "request": self.request,
            "previous_messages": self.request.get("previous_messages") or [],
            "context_parameters": self.request.get("context_parameters") or {},
            "idempotency_key": self.idempotency_key,
            "agent_joined_at": self.agent_joined_at,
            "customer_messages": [m.to_dict() for m in self.customer_messages],
            "agent_messages": [m.to_dict() for m in self.agent_messages],
            "events": list(self.events),
        }


@dataclass
class StoredResponse:
    """A 2xx answer kept under its idempotency key, replayed when the key comes again."""

    status_code: int
    body: dict[str, Any]


@dataclass
class Stats:
    tokens_issued: int = 0
    messages_received: int = 0
    duplicates_absorbed: int = 0
    faults: dict[str, int] = field(
        default_factory=lambda: {"error_500": 0, "error_503": 0, "rate_limit": 0, "stall": 0}
    )
    agent_messages_queued: int = 0
    callbacks_delivered: int = 0
    callback_retries: int = 0
    callback_failures: int = 0


class Store:
    """All the emulator's state; used from the event loop only, so plain dicts suffice.

    Code that changes a conversation calls `save()` (or `remember()`) once it is done; without a state
    file those are no-ops and the dicts are all there is.
    """

    def __init__(self, state_file: StateFile | None = None) -> None:
        self.tokens: dict[str, Token] = {}
        self.conversations: dict[str, Conversation] = {}
        self.idempotent: dict[tuple[str, str], StoredResponse] = {}
        self.stats = Stats()
        self.state_file = state_file
        if state_file is not None:
            snapshot = state_file.load()
            self.tokens = {token.value: token for token in snapshot.tokens}
            self.conversations = {conv.id: conv for conv in snapshot.conversations}
            self.idempotent = snapshot.idempotent

    @property
    def persistent(self) -> bool:
        return self.state_file is not None

    def get(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    def add_token(self, token: Token) -> None:
        self.tokens[token.value] = token
        if self.state_file is not None:
            self.state_file.save_token(token)

    def drop_token(self, value: str) -> None:
        self.tokens.pop(value, None)
        if self.state_file is not None:
            self.state_file.delete_token(value)

    def save(self, conv: Conversation, response: tuple[str, str, StoredResponse] | None = None) -> None:
        """Write the conversation through. A forgotten one is not written back: an agent task that was
        still holding it when it was forgotten must not bring it back."""
        if self.state_file is not None and self.conversations.get(conv.id) is conv:
            self.state_file.save_conversation(conv, response)

    def remember(self, conv: Conversation, scope: str, key: str | None, stored: StoredResponse) -> None:
        """Keep the answer under its idempotency key (if any) and save the conversation, together."""
        if key:
            self.idempotent[(scope, key)] = stored
        self.save(conv, (scope, key, stored) if key else None)

    def forget(self, conversation_id: str) -> Conversation | None:
        """Drop a conversation as if it had never been, with the idempotent answers that name it (a
        replayed create key then creates a new one instead of answering an id that no longer exists)."""
        conv = self.conversations.pop(conversation_id, None)
        if conv is None:
            return None
        keys = [
            (scope, key)
            for (scope, key), stored in self.idempotent.items()
            if scope == f"message:{conv.id}" or (scope == "create" and stored.body.get("id") == conv.id)
        ]
        for scope_key in keys:
            del self.idempotent[scope_key]
        if self.state_file is not None:
            self.state_file.delete_conversation(conv.id, keys)
        return conv

    def close(self) -> None:
        if self.state_file is not None:
            self.state_file.close()

    def stats_dict(self) -> dict[str, Any]:
        conversations = list(self.conversations.values())
        s = self.stats
        return {
            "conversations": len(conversations),
            "conversations_open": sum(c.status == "open" for c in conversations),
            "conversations_ended": sum(c.status == "ended" for c in conversations),
            "messages_received": s.messages_received,
            "duplicates_absorbed": s.duplicates_absorbed,
            "tokens_issued": s.tokens_issued,
            "faults": dict(s.faults),
            "faults_total": sum(s.faults.values()),
            "agent_messages_queued": s.agent_messages_queued,
            "callbacks_delivered": s.callbacks_delivered,
            "callback_retries": s.callback_retries,
            "callback_failures": s.callback_failures,
        }
