"""The Lex V2 code hook that starts a live chat (docs/protocol.md §3, `POST /lex/code-hook`).

In the AWS deployment lexdesk replaces, the bot's fulfillment Lambda starts the Talkdesk conversation
and puts its id in the session attribute `talkdesk_conversation_id`; the Lex Web UI then opens
`/talkdesk?conversationId=<that value>`. Here the code hook does the lexdesk equivalent, in one
transaction: it records the turn (what the customer said, the intent, the sentiment), requests the
handoff exactly as a bot turn over the native protocol does (the `talkdesk` worker starts the Talkdesk
conversation with the transcript, intents and sentiment, under an idempotency key, retried and
ordered), and answers Lex with a signed conversation handle (shared/handles.py) as
`talkdesk_conversation_id`. Only lexdesk can make such a handle, so only the customer whose Lex
session it was handed to can attach to the chat.

Lex may call the hook more than once for one fulfillment (a retried Lambda): the conversation is keyed
by the Lex session id, so a repeat answers the same handle and starts nothing new.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from shared import handles
from shared.lifecycle import request_handoff
from shared.models import Conversation, ConversationState, Destination, MessageStatus, Sender
from shared.outbox import unit_of_work
from shared.redaction import redact_slots
from shared.settings import Settings
from shared.store import add_message, create_conversation

SESSION_ATTRIBUTE = "talkdesk_conversation_id"
SOURCE = "lex-code-hook"
CONNECTING = "Connecting you with an agent. Please stay on this chat."


class _Lenient(BaseModel):
    # Lex's own field names (camelCase), and whatever else Lex sends, kept.
    model_config = ConfigDict(extra="allow")


class HookIntent(_Lenient):
    name: str = Field(min_length=1, max_length=100)
    state: str | None = None
    confirmationState: str | None = None
    slots: dict[str, Any] | None = None


class HookSessionState(_Lenient):
    intent: HookIntent
    sessionAttributes: dict[str, str] = Field(default_factory=dict)


class HookBot(_Lenient):
    id: str | None = Field(None, max_length=100)
    aliasId: str | None = Field(None, max_length=100)
    localeId: str | None = Field(None, max_length=32)


class CodeHookEvent(_Lenient):
    """The fields of a Lex V2 code hook input event that lexdesk reads; the rest is kept as Lex sent it."""

    sessionId: str = Field(min_length=1, max_length=100, pattern=r"^[0-9A-Za-z._:-]+$")
    invocationSource: str = "FulfillmentCodeHook"
    inputTranscript: str = Field("", max_length=4000)
    bot: HookBot = Field(default_factory=HookBot)
    sessionState: HookSessionState
    interpretations: list[dict[str, Any]] = Field(default_factory=list)


def answer(settings: Settings, event: CodeHookEvent) -> dict[str, Any]:
    """The Lex V2 code hook response for `event`."""
    intent = event.sessionState.intent
    attributes = dict(event.sessionState.sessionAttributes)
    if intent.name != settings.escalation_intent:
        # Not ours to fulfil: Lex carries on with the bot's own configuration.
        return {"sessionState": {"dialogAction": {"type": "Delegate"}, "intent": _intent_json(intent),
                                 "sessionAttributes": attributes}}
    assert settings.resume_token_secret is not None, "the callback app requires LEXDESK_RESUME_TOKEN_SECRET"
    conversation_id = start_live_chat(settings, event)
    attributes[SESSION_ATTRIBUTE] = handles.issue(settings.resume_token_secret.get_secret_value(), conversation_id)
    return {
        "sessionState": {
            "dialogAction": {"type": "Close"},
            "intent": {**_intent_json(intent), "state": "Fulfilled"},
            "sessionAttributes": attributes,
        },
        "messages": [{"contentType": "PlainText", "content": CONNECTING}],
    }


def start_live_chat(settings: Settings, event: CodeHookEvent) -> str:
    """The lexdesk conversation for this Lex session, with its handoff requested; created once."""
    with unit_of_work(settings) as uow:
        existing = uow.session.scalars(
            select(Conversation)
            .where(Conversation.lex_session_id == event.sessionId, Conversation.state != ConversationState.CLOSED)
            .order_by(Conversation.created_at.desc())
            .limit(1)
        ).one_or_none()
        if existing is not None and existing.attributes.get("source") == SOURCE:
            return existing.id
        session_attributes = event.sessionState.sessionAttributes
        conversation = create_conversation(
            uow.session,
            customer_name=_attribute(session_attributes, "customer_name"),
            customer_email=_attribute(session_attributes, "customer_email"),
            locale=event.bot.localeId,
            attributes={"source": SOURCE, "lex_bot_id": event.bot.id or "",
                        "lex_bot_alias_id": event.bot.aliasId or ""},
        )
        conversation.lex_session_id = event.sessionId
        sentiment = _sentiment(event)
        intent = event.sessionState.intent
        if event.inputTranscript:
            # The Lex Web UI showed this turn itself: a transcript row, not a frame to send anyone.
            add_message(uow.session, conversation.id, sender=Sender.CUSTOMER, destination=Destination.NONE,
                        body=event.inputTranscript, status=MessageStatus.DELIVERED, intent=intent.name,
                        intent_state=intent.state, sentiment=sentiment,
                        payload={"lex": {"intent": intent.name, "intent_state": intent.state,
                                         "slots": redact_slots(intent.slots or {}),
                                         "invocation_source": event.invocationSource}})
        if sentiment:
            conversation.last_sentiment = sentiment
        request_handoff(uow, conversation)
        return conversation.id


def _intent_json(intent: HookIntent) -> dict[str, Any]:
    return intent.model_dump(exclude_none=True)


def _attribute(attributes: dict[str, str], name: str) -> str | None:
    # Card-masked and cut to the column by create_conversation, like every field the customer gives.
    value = attributes.get(name)
    return value if isinstance(value, str) and value else None


def _sentiment(event: CodeHookEvent) -> str | None:
    for interpretation in event.interpretations:
        response = interpretation.get("sentimentResponse")
        if isinstance(response, dict) and isinstance(response.get("sentiment"), str):
            return str(response["sentiment"])[:16]
    return None
