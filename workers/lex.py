"""Queue `lex`: the customer's messages to the bot, one RecognizeText per message in seq order, and
the bot's answer (with its intent, dialog state and sentiment) into the transcript."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from celery import Task

from shared.clients.errors import DeliveryError, classified
from shared.clients.factory import lex_client, lex_models
from shared.clients.lex_models import LexModelsUnavailable, WaitAndContinue
from shared.domain import BOT_STATES, BotTurn, is_escalation
from shared.leases import Lease, lock_conversation
from shared.leases import drain as drain_with_lease
from shared.left_messages import ask_for_agent, awaits_message
from shared.left_messages import take as take_left_message
from shared.lifecycle import DELIVER, STILL_WAITING
from shared.message_status import DELIVERED
from shared.models import Destination, Message, MessageStatus, Sender, utcnow
from shared.outbox import unit_of_work
from shared.pacing import cut_if_interrupted, hold
from shared.redaction import MASK, is_sensitive_slot, redact_slots
from shared.sealing import seal, unmask_non_answer, unseal
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
        cut_if_interrupted(uow, conversation_id)  # a bot answer still being paced out, cut by this message
        if conversation.state not in BOT_STATES:
            # Typed while the handoff started: the agent gets it in the handed-over transcript.
            message.status = MessageStatus.SKIPPED
            message.sealed_body = None
            message.last_error = f"not sent to the bot: conversation is {conversation.state}"
            message.error_class = "handed_over"
            uow.notify(message, DELIVERED)
            lease.settle(session, locked=True)
            return
        if awaits_message(conversation):
            # Asked for an agent outside business hours, the customer was offered to leave a message:
            # this is it. It is kept for the agents, not sent to the bot (shared/left_messages.py).
            take_left_message(uow, conversation, message, config.business_schedule, utcnow())
            lease.settle(session, locked=True)
            return
        message_id, session_id, answering = message.id, conversation.lex_session_id, conversation.eliciting_slot
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
    answer = Answer(text, answering, _plan(turn))
    _record_turn(conversation_id, message_id, turn, answer, lease)


@dataclass(frozen=True)
class Plan:
    """What the bot's configuration says about a turn's answer (shared/clients/lex_models.py)."""

    allow_interrupt: bool = True
    wait: WaitAndContinue | None = None
    reprompt: tuple[str, ...] = ()  # the slot's own prompt, said again when the wait times out


@dataclass(frozen=True)
class Answer:
    """The customer's message as Lex took it: its clear text, the slot it answered, and the plan."""

    clear_text: str
    eliciting_slot: str | None
    plan: Plan


def _plan(turn: BotTurn) -> Plan:
    """Read only when it matters: a Waiting turn (wait-and-continue) or an answer to pace out."""
    waiting = turn.intent_state == "Waiting" and turn.slot_to_elicit is not None
    paced = len(turn.messages) > 1 and settings().bot_typing_delay > 0
    if not turn.intent or not (waiting or paced):
        return Plan()
    try:
        models = lex_models()
        slot = models.slot(turn.intent, turn.slot_to_elicit) if turn.slot_to_elicit else None
        if turn.dialog_action == "ElicitSlot" and slot is not None:
            allow = slot.allow_interrupt
        else:
            closing = models.closing_allows_interrupt(turn.intent) if turn.dialog_action == "Close" else None
            allow = True if closing is None else closing
    except LexModelsUnavailable as exc:
        # The answer still goes out; only the waits fall back to LEXDESK_WAITING_* settings.
        log.warning("lex_models_unavailable", intent=turn.intent, slot=turn.slot_to_elicit, error=str(exc)[:300])
        return Plan()
    return Plan(allow_interrupt=allow, wait=slot.wait_and_continue if waiting and slot else None,
                reprompt=slot.prompt if slot else ())


def _record_turn(conversation_id: str, message_id: int, turn: BotTurn, answer: Answer, lease: Lease) -> None:
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
        if message.body == MASK and answer.eliciting_slot:
            # Sealed because it answered a card prompt: if it was no card data, keep what was written.
            filled = turn.slots.get(answer.eliciting_slot) is not None
            kept = unmask_non_answer(answer.clear_text, filled)
            if kept is not None:
                message.body = kept
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
        # (A bot message reading a card number, CVV or expiry back was masked by the client already.)
        bot_messages = [{**m, "lex": prompt_info} for m in _with_cards_attached(turn.messages)]
        columns = {"intent": turn.intent, "intent_state": turn.intent_state, "dialog_action": turn.dialog_action}
        for position, bot_message in enumerate(bot_messages):
            if position == 1 and config.bot_typing_delay > 0:
                # The rest is paced out, and the customer may cut it short (shared/pacing.py).
                hold(uow, conversation_id, bot_messages[1:], answer.plan.allow_interrupt, **columns)
                break
            payload: dict[str, Any] = {"lex": prompt_info}
            if bot_message.get("cards"):
                payload["cards"] = bot_message["cards"]
            add_message(uow.session, conversation_id, sender=Sender.BOT, destination=Destination.CUSTOMER,
                        body=bot_message["text"], payload=payload, **columns)
        if is_escalation(turn, config.escalation_intent) and conversation.state in BOT_STATES:
            # The handoff, or outside business hours the offer to leave a message (shared/left_messages.py).
            ask_for_agent(uow, conversation, config.business_schedule, utcnow())
        elif turn.intent_state == "Waiting":
            # Lex wait-and-continue: the bot waits for the customer (e.g. to fetch a card). Over a stream
            # Lex would remind them itself; over text lexdesk does, as the bot's configuration says
            # (timers.still_waiting), and asks for the slot again when the wait times out.
            add_event(uow.session, conversation_id, "waiting", intent=turn.intent)
            uow.publish_after_commit(STILL_WAITING, conversation_id=conversation_id, since_seq=message.seq,
                                     prompts_sent=0, **_wait_arguments(answer.plan, turn))
        uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
        lease.settle(uow.session, locked=True)



def _wait_arguments(plan: Plan, turn: BotTurn) -> dict[str, Any]:
    """The still-waiting series as the bot defines it; settings where its configuration is unknown."""
    config = settings()
    wait = plan.wait
    return {
        "started_at": time.time(),
        "frequency": wait.frequency_seconds if wait else config.waiting_prompt_interval,
        "timeout": wait.timeout_seconds if wait else config.waiting_timeout,
        "still_waiting": list(wait.still_waiting) if wait and wait.still_waiting else None,
        "reprompt": list(plan.reprompt) or None,
        "slot": turn.slot_to_elicit,
        "intent": turn.intent,
    }


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
