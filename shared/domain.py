"""Conversation rules, free of I/O: which way a customer message goes, which state changes are
allowed, and what the agent is handed. Workers load data, ask these functions, and store the answer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.models import ConversationState as S
from shared.models import Destination

ALLOWED_TRANSITIONS: dict[S, frozenset[S]] = {
    S.BOT: frozenset({S.HANDOFF_REQUESTED, S.CLOSED}),
    S.HANDOFF_REQUESTED: frozenset({S.AGENT_QUEUED, S.AGENT_ACTIVE, S.HANDOFF_FAILED, S.CLOSED}),
    # To HANDOFF_FAILED when Talkdesk no longer knows the conversation (shared/lifecycle.py).
    S.AGENT_QUEUED: frozenset({S.AGENT_ACTIVE, S.HANDOFF_FAILED, S.CLOSED}),
    S.AGENT_ACTIVE: frozenset({S.HANDOFF_FAILED, S.CLOSED}),
    S.HANDOFF_FAILED: frozenset({S.HANDOFF_REQUESTED, S.CLOSED}),
    S.CLOSED: frozenset(),
}


# Who answers the customer: the bot (also after a failed handoff), or the agent side (Talkdesk).
BOT_STATES = frozenset({S.BOT, S.HANDOFF_FAILED})
AGENT_SIDE_STATES = frozenset({S.HANDOFF_REQUESTED, S.AGENT_QUEUED, S.AGENT_ACTIVE})


class InvalidTransition(ValueError):
    pass


def check_transition(current: str, new: S) -> S:
    if new not in ALLOWED_TRANSITIONS[S(current)]:
        raise InvalidTransition(f"conversation cannot go from {current} to {new}")
    return new


def destination_for_customer_message(state: str) -> Destination | None:
    """The bot answers until a handoff starts; from then on the agent does. None: the conversation is
    closed and takes no more messages. During `handoff_requested` messages wait for the Talkdesk
    conversation to exist (they are sent after the transcript, in order)."""
    match S(state):
        case S.BOT | S.HANDOFF_FAILED:
            return Destination.LEX
        case S.HANDOFF_REQUESTED | S.AGENT_QUEUED | S.AGENT_ACTIVE:
            return Destination.TALKDESK
        case S.CLOSED:
            return None


@dataclass(frozen=True)
class BotTurn:
    """What Lex said for one customer message, as plain data (see shared/clients/lex.py)."""

    messages: list[dict[str, Any]]  # {"text": str} or {"text": str, "cards": [...]}
    intent: str | None
    intent_state: str | None
    dialog_action: str | None
    slot_to_elicit: str | None = None
    slots: dict[str, str | None] = field(default_factory=dict)
    sentiment: str | None = None
    sentiment_score: dict[str, float] | None = None
    confidence: float | None = None
    session_attributes: dict[str, str] = field(default_factory=dict)
    # As Lex returned it, slot values in clear: kept out of repr so no log line can show a card number.
    session_state: dict[str, Any] = field(default_factory=dict, repr=False)


def is_escalation(turn: BotTurn, escalation_intent: str) -> bool:
    """The bot recognised the intent that hands the customer to a person (and did not fail it)."""
    return turn.intent == escalation_intent and turn.intent_state != "Failed"


@dataclass(frozen=True)
class TranscriptLine:
    sender: str  # customer | bot | agent | system
    text: str
    created_at: datetime
    intent: str | None = None
    sentiment: str | None = None


def intents_traversed(lines: Iterable[TranscriptLine]) -> list[str]:
    seen: list[str] = []
    for line in lines:
        if line.intent and line.intent not in seen:
            seen.append(line.intent)
    return seen


def last_sentiment(lines: Sequence[TranscriptLine]) -> str | None:
    return next((line.sentiment for line in reversed(lines) if line.sentiment), None)


def handoff_request(
    *,
    touchpoint_id: str,
    customer_name: str | None,
    customer_email: str | None,
    attributes: dict[str, Any],
    transcript: Sequence[TranscriptLine],
) -> dict[str, Any]:
    """The Talkdesk 'start a conversation' body (docs/protocol.md §4): the bot transcript so far, the intents
    it went through and the customer's last sentiment, so the agent does not ask again."""
    intents = intents_traversed(transcript)
    sentiment = last_sentiment(transcript)
    reason_parts = []
    if intents:
        reason_parts.append("Intents: " + " > ".join(intents))
    if sentiment:
        reason_parts.append(f"Sentiment: {sentiment}")
    previous = [
        {
            # Talkdesk: USER is the contact (the customer); EXTERNAL is another system (the bot, or an
            # agent of an earlier Talkdesk conversation of this chat that Talkdesk lost).
            "type": "USER" if line.sender == "customer" else "EXTERNAL",
            "content": f"Agent: {line.text}" if line.sender == "agent" else line.text,
            "created_at": line.created_at.isoformat(),
        }
        for line in transcript
        if line.text and line.sender in ("customer", "bot", "agent")
    ]
    return {
        "touchpoint_id": touchpoint_id,
        "subject": f"Chat with {customer_name or 'a website customer'}",
        "contact_person": {"email": customer_email or ""},
        "context_parameters": {
            "contact_name": customer_name or "",
            "contact_phone": str(attributes.get("phone", "")),
            "contact_reason": "; ".join(reason_parts) or "Asked for an agent",
            "website_location": str(attributes.get("page", attributes.get("website_location", ""))),
        },
        "previous_messages": previous,
    }


def backoff_seconds(attempt: int, base: float, cap: float, retry_after: float | None, jitter: float) -> float:
    """Exponential backoff, jittered over its upper half (`jitter` in [0, 1)), never before Retry-After."""
    delay = min(cap, base * (2 ** max(0, attempt - 1))) * (0.5 + jitter / 2)
    return max(delay, retry_after) if retry_after is not None else delay
