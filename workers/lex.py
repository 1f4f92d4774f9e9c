"""Queue `lex`: the customer's messages to the bot, one RecognizeText per message in seq order, and
the bot's answer (with its intent, dialog state and sentiment) into the transcript."""

from __future__ import annotations

import json
from typing import Any

from celery import Task

from shared.clients.errors import DeliveryError, classified
from shared.clients.factory import lex_client
from shared.domain import BotTurn, is_escalation
from shared.leases import Lease, lock_conversation
from shared.leases import drain as drain_with_lease
from shared.lifecycle import DELIVER, STILL_WAITING, request_handoff
from shared.message_status import DELIVERED
from shared.models import ConversationState, Destination, Message, MessageStatus, Sender, utcnow
from shared.outbox import unit_of_work
from shared.redaction import is_sensitive_slot, redact_slots
from shared.sealing import seal, unseal
from shared.store import add_event, add_message, next_pending
from workers.base import (
    Failure,
    LexdeskTask,
    RetryLater,
    app,
    data_key,
    log,
    record_failure,
    retry_drain,
    settings,
)

BOT_STATES = (ConversationState.BOT, ConversationState.HANDOFF_FAILED)


@app.task(name="lex.drain", bind=True, base=LexdeskTask)
def drain(self: Task, conversation_id: str, lease_holder: str | None = None) -> None:
    try:
        drain_with_lease(settings(), conversation_id, Destination.LEX, lambda lease: _step(conversation_id, lease),
                         holder=lease_holder)
    except RetryLater as exc:
        retry_drain(self, exc)


def _step(conversation_id: str, lease: Lease) -> None:
    """One message: read it (taking the lease), call Lex, record the turn (settling the lease)."""
    config = settings()
    with unit_of_work(config) as uow:
        session = uow.session
        conversation = lease.take(session)
        if conversation is None:
            return
        message = next_pending(session, conversation_id, Destination.LEX)
        if message is None:
            lease.give_back(session)
            return
        if conversation.state not in BOT_STATES:
            # Typed while the handoff started: the agent gets it in the handed-over transcript.
            message.status = MessageStatus.SKIPPED
            message.sealed_body = None
            message.last_error = f"not sent to the bot: conversation is {conversation.state}"
            message.error_class = "handed_over"
            uow.notify(message, DELIVERED)
            lease.settle(session, locked=True)
            return
        message_id, session_id = message.id, conversation.lex_session_id
        text = message.body if message.sealed_body is None else unseal(data_key(), message.sealed_body)
        # Sent before but never recorded (a crash, a timeout): Lex may have taken the turn already.
        # Replaying it from the state before it keeps a retry from becoming a second, different turn.
        replay = message.sent_at is not None
        before = json.loads(unseal(data_key(), conversation.lex_session_state)) \
            if replay and conversation.lex_session_state else None
        message.sent_at = utcnow()
    client = lex_client()
    try:
        with classified("Lex RecognizeText"):
            if replay and before is None:
                client.delete_session(session_id)  # the first turn: the state before it is no session
            turn = client.recognize_text(session_id, text, session_state=before)
    except DeliveryError as error:
        outcome, _ = record_failure(message_id, error, lease)  # raises RetryLater for a retry
        if outcome == Failure.DEAD:
            _tell_customer_bot_unavailable(conversation_id)
        return
    _record_turn(conversation_id, message_id, turn, lease)


def _record_turn(conversation_id: str, message_id: int, turn: BotTurn, lease: Lease) -> None:
    config = settings()
    with unit_of_work(config) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        message = uow.session.get_one(Message, message_id)
        if conversation is None or message.status != MessageStatus.PENDING:
            lease.settle(uow.session, locked=conversation is not None)
            return  # a drain whose lease had expired already recorded it
        lex_info = {"intent": turn.intent, "intent_state": turn.intent_state, "dialog_action": turn.dialog_action}
        message.status = MessageStatus.DELIVERED
        uow.notify(message, DELIVERED)
        message.sealed_body = None
        message.delivered_at = utcnow()
        message.attempts += 1
        message.intent, message.intent_state = turn.intent, turn.intent_state
        message.dialog_action, message.sentiment = turn.dialog_action, turn.sentiment
        # Masked again here, where they are stored: whatever built the turn, no card, CVV or expiry in clear.
        message.payload = {**message.payload, "lex": {**lex_info, "slots": redact_slots(turn.slots),
                                                      "sentiment_score": turn.sentiment_score,
                                                      "confidence": turn.confidence}}
        if turn.sentiment:
            conversation.last_sentiment = turn.sentiment
        conversation.eliciting_slot = turn.slot_to_elicit if turn.dialog_action == "ElicitSlot" else None
        # The answer to this prompt will be stored masked (shared/sealing.py): say so on the prompt, so
        # the chat page masks what it keeps of the answer too (docs/protocol.md §2, `lex`).
        prompt_info: dict[str, Any] = dict(lex_info)
        if conversation.eliciting_slot and is_sensitive_slot(conversation.eliciting_slot):
            prompt_info["sensitive_answer"] = True
        if turn.session_state:
            conversation.lex_session_state = seal(data_key(), json.dumps(turn.session_state))
        for bot_message in _with_cards_attached(turn.messages):
            payload: dict[str, Any] = {"lex": prompt_info}
            if bot_message.get("cards"):
                payload["cards"] = bot_message["cards"]
            add_message(uow.session, conversation_id, sender=Sender.BOT, destination=Destination.CUSTOMER,
                        body=bot_message["text"], payload=payload, intent=turn.intent,
                        intent_state=turn.intent_state, dialog_action=turn.dialog_action)
        if is_escalation(turn, config.escalation_intent) and conversation.state in BOT_STATES:
            request_handoff(uow, conversation)
        elif turn.intent_state == "Waiting":
            # Lex wait-and-continue: the bot waits for the customer (e.g. to fetch a card); lexdesk
            # keeps the conversation warm with prompts until they answer (timers.still_waiting).
            add_event(uow.session, conversation_id, "waiting", intent=turn.intent)
            uow.publish_after_commit(STILL_WAITING, conversation_id=conversation_id, since_seq=message.seq,
                                     prompts_sent=0)
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
        lease.settle(uow.session, locked=True)



def _with_cards_attached(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lex sends a slot prompt and its response card as two messages; the customer sees one."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if message.get("cards") and merged and not merged[-1].get("cards"):
            merged[-1] = {**merged[-1], "cards": message["cards"]}
        else:
            merged.append(dict(message))
    return merged


def _tell_customer_bot_unavailable(conversation_id: str) -> None:
    with unit_of_work(settings()) as uow:
        if lock_conversation(uow.session, conversation_id) is None:
            return
        add_message(uow.session, conversation_id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER,
                    body="Sorry, the assistant could not answer that message. Please try again.")
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
    log.warning("bot_message_dead_lettered", conversation_id=conversation_id)
