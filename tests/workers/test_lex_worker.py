"""The lex queue's consumer, called directly: turns stored in order, card data never stored in clear."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from kombu import Connection, Queue
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Conversation, Message
from shared.store import create_conversation
from tests.workers.conftest import Env, customer_says


def _conversation(env: Env) -> str:
    with session_scope(env.database_url) as session:
        return create_conversation(session, customer_name="Ana").id


def _say(conversation_id: str, *texts: str, answer_each: bool = False) -> None:
    """Queue the messages, then drain; or, like a customer answering each prompt, one at a time."""
    from workers import lex

    for n, text in enumerate(texts):
        customer_says(conversation_id, f"{text}-{n}", text)
        if answer_each:
            lex.drain(conversation_id=conversation_id)
    lex.drain(conversation_id=conversation_id)


def _rows(env: Env, conversation_id: str) -> list[Message]:
    with session_scope(env.database_url) as session:
        return list(session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                    .order_by(Message.seq)))


def test_turns_are_answered_in_order_with_intent_state_and_sentiment(env: Env) -> None:
    conversation_id = _conversation(env)
    _say(conversation_id, "what is my balance", "savings", "this is useless and terrible")
    rows = _rows(env, conversation_id)
    customer = [r for r in rows if r.sender == "customer"]
    assert [(r.body, r.status, r.intent, r.intent_state) for r in customer] == [
        ("what is my balance", "delivered", "CheckBalance", "InProgress"),
        ("savings", "delivered", "CheckBalance", "Fulfilled"),
        ("this is useless and terrible", "delivered", "FallbackIntent", "ReadyForFulfillment"),
    ]
    assert customer[2].sentiment == "NEGATIVE"
    bot = [r for r in rows if r.sender == "bot"]
    assert [r.frame_seq for r in bot] == [1, 2, 3]
    assert "Savings account balance is $8,765.43" in bot[1].body
    assert bot[0].payload["cards"][0]["buttons"][0]["value"] == "Checking"


def test_escalation_intent_requests_the_handoff(env: Env) -> None:
    conversation_id = _conversation(env)
    _say(conversation_id, "I want to talk to an agent")
    rows = _rows(env, conversation_id)
    assert [(r.sender, r.kind, r.event, r.destination) for r in rows[1:]] == [
        ("bot", "message", None, "customer"),
        ("system", "event", "handoff_requested", "customer"),
        ("system", "event", "handoff_requested", "talkdesk"),
    ]
    with session_scope(env.database_url) as session:
        assert session.get_one(Conversation, conversation_id).state == "handoff_requested"


CARD = "4111 1111 1111 1111"


def test_card_data_reaches_lex_but_is_never_stored_in_clear(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.clients.factory import lex_client
    from shared.settings import get_settings

    monkeypatch.setenv("LEXDESK_LEX_BOT_ID", "PAYMENTBOT")
    get_settings.cache_clear()
    lex_client.cache_clear()
    conversation_id = _conversation(env)
    _say(conversation_id, "I want to make a payment", "1234", "$250", CARD, "yes", "05/27", "123", answer_each=True)

    rows = _rows(env, conversation_id)
    stored = " ".join(f"{r.body} {r.sealed_body} {r.payload}" for r in rows)
    assert "4111111111111111" not in stored.replace(" ", "") and "4111 1111" not in stored
    assert all(r.sealed_body is None for r in rows), "sealed copies are wiped once Lex has them"

    # Answers to the card, CVV and expiry prompts are masked whole; the rest stays readable for the agent.
    assert [r.body for r in rows if r.sender == "customer"] == [
        "I want to make a payment", "1234", "$250", "[redacted]", "yes", "[redacted]", "[redacted]"]
    assert "05/27" not in stored and "2027-05" not in stored
    # The prompts for them say so, for the chat page (docs/protocol.md §2, `lex`); no other prompt does.
    flagged = [r.body for r in rows if r.sender == "bot" and r.payload["lex"].get("sensitive_answer")]
    assert flagged == ["What is the credit card number you would like to use?",
                       "What is the card's expiration date?",
                       "What is the three digit security code (CVV) on the back of the card?"]
    # Lex's closing names the card's last four digits only.
    assert any("ending in 1111" in r.body for r in rows if r.sender == "bot")
    assert any(r.body.startswith("I will go ahead and process the $250 payment") for r in rows), rows[-1].body

    # Lex itself got the clear values: its session holds the full card number and the CVV.
    with session_scope(env.database_url) as session:
        session_id = session.get_one(Conversation, conversation_id).lex_session_id
    runtime = boto3.client("lexv2-runtime", endpoint_url=env.lex_url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
    lex_session = runtime.get_session(botId="PAYMENTBOT", botAliasId="TSTALIASID", localeId="en_US",
                                      sessionId=session_id)
    slots = lex_session["sessionState"]["intent"]["slots"]
    assert slots["CreditCardNumber"]["value"]["interpretedValue"] == "4111111111111111"
    assert slots["CVV"]["value"]["interpretedValue"] == "123"


def test_a_card_number_typed_in_free_text_is_stored_with_its_last_four_only(env: Env) -> None:
    conversation_id = _conversation(env)
    _say(conversation_id, f"my card {CARD} was charged twice")
    rows = _rows(env, conversation_id)
    assert rows[0].body == "my card [card ending 1111] was charged twice"
    assert rows[0].sealed_body is None and rows[0].status == "delivered"


def _still_waiting_published() -> dict[str, Any]:
    """The kwargs of the newest `timers.still_waiting` on the (in-memory) broker, as a worker gets them."""
    from shared.settings import get_settings

    with Connection(get_settings().broker_url) as connection:
        queue = Queue("timers", routing_key="timers").bind(connection.default_channel)
        found: list[dict[str, Any]] = []
        while (message := queue.get(no_ack=True)) is not None:
            if message.headers.get("task") == "timers.still_waiting":
                found.append(message.decode()[1])
    assert found, "no timers.still_waiting was published"
    return found[-1]


def _wait_and_continue(env: Env) -> dict[str, Any]:
    """The PaymentsBot's CreditCardNumber slot as its configuration says, through the real models API."""
    models = boto3.client("lexv2-models", endpoint_url=env.lex_url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    version = models.describe_bot_alias(botId="PAYMENTBOT", botAliasId="TSTALIASID")["botVersion"]
    where = {"botId": "PAYMENTBOT", "botVersion": version, "localeId": "en_US"}
    intent = next(i for i in models.list_intents(**where)["intentSummaries"] if i["intentName"] == "ProcessPayment")
    slot = next(s for s in models.list_slots(**where, intentId=intent["intentId"])["slotSummaries"]
                if s["slotName"] == "CreditCardNumber")
    described = models.describe_slot(**where, intentId=intent["intentId"], slotId=slot["slotId"])
    return dict(described["valueElicitationSetting"])


def test_a_waiting_intent_follows_the_bots_wait_and_continue_configuration(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wait-and-continue as the bot defines it (describe_slot's waitAndContinueSpecification), not
    lexdesk's constants: the still-waiting response at the bot's frequency, and at its timeout the
    slot's own prompt again. "Can you wait a minute?" typed at the card prompt is no card data: it is
    kept as written."""
    from shared.clients.factory import lex_client, lex_models
    from shared.settings import get_settings
    from workers import timers

    monkeypatch.setenv("LEXDESK_LEX_BOT_ID", "PAYMENTBOT")
    for cache in (get_settings, lex_client, lex_models):
        cache.cache_clear()
    elicitation = _wait_and_continue(env)
    spec = elicitation["waitAndContinueSpecification"]
    still = spec["stillWaitingResponse"]
    still_text = still["messageGroups"][0]["message"]["plainTextMessage"]["value"]
    prompt_text = elicitation["promptSpecification"]["messageGroups"][0]["message"]["plainTextMessage"]["value"]

    conversation_id = _conversation(env)
    _say(conversation_id, "I'd like to make a payment on my account", "Yes the account ID is 1234", "$100",
         "Can you wait a minute?", answer_each=True)
    rows = _rows(env, conversation_id)
    waited = next(r for r in rows if r.sender == "customer" and r.intent_state == "Waiting")
    assert waited.body == "Can you wait a minute?" and waited.sealed_body is None
    assert [r.body for r in rows if r.sender == "bot"][-1] == \
        spec["waitingResponse"]["messageGroups"][0]["message"]["plainTextMessage"]["value"]
    assert (rows[-1].kind, rows[-1].event) == ("event", "waiting")

    published = _still_waiting_published()
    assert (published["frequency"], published["timeout"]) == (still["frequencyInSeconds"], still["timeoutInSeconds"])
    assert published["still_waiting"] == [still_text] and published["reprompt"] == [prompt_text]

    # What Celery runs at each countdown: reminders at the bot's frequency, then at its timeout the
    # slot's own prompt, flagged as a card prompt for the page, and the series ends.
    frequency, timeout = still["frequencyInSeconds"], still["timeoutInSeconds"]
    reminders = int((timeout - 0.001) // frequency)
    step = {**published}
    for prompts_sent in range(1, reminders + 2):
        elapsed = min(prompts_sent * frequency, timeout)
        timers.still_waiting(**{**step, "prompts_sent": prompts_sent, "started_at": time.time() - elapsed})
    server_turns = [r for r in _rows(env, conversation_id) if r.seq > rows[-1].seq]
    assert [r.body for r in server_turns] == [still_text] * reminders + [prompt_text]
    assert server_turns[-1].payload["lex"]["dialog_action"] == "ElicitSlot"
    assert server_turns[-1].payload["lex"]["sensitive_answer"] is True

    # A new series stops as soon as the customer has written.
    _say(conversation_id, "Ok I am back")
    assert [r.body for r in _rows(env, conversation_id) if r.sender == "bot"][-1] == \
        spec["continueResponse"]["messageGroups"][0]["message"]["plainTextMessage"]["value"]
    back = [r for r in _rows(env, conversation_id) if r.sender == "customer"][-1]
    assert back.body == "Ok I am back"
    before = len(_rows(env, conversation_id))
    timers.still_waiting(**{**step, "prompts_sent": 1})
    assert len(_rows(env, conversation_id)) == before


def test_a_turn_that_reached_lex_before_a_crash_is_replayed_not_taken_twice(env: Env) -> None:
    """Found by `lexdesk chaos`: a worker killed between RecognizeText and its commit left the row
    pending; the retry sent "Checking" again to a session that had moved on, and the customer was asked
    for the account again instead of getting the balance."""
    from shared.clients.factory import lex_client
    from shared.models import utcnow
    from workers import lex

    conversation_id = _conversation(env)
    _say(conversation_id, "what is my balance")
    customer_says(conversation_id, "crashed-1", "Checking")
    with session_scope(env.database_url) as session:
        row = session.scalars(select(Message).where(Message.client_message_id == "crashed-1")).one()
        row.sent_at = utcnow()  # what the worker marks before it calls Lex
        session_id = session.get_one(Conversation, conversation_id).lex_session_id
    lex_client().recognize_text(session_id, "Checking")  # ... the call that got through, then the crash
    lex.drain(conversation_id=conversation_id)  # the retry
    bot = [r.body for r in _rows(env, conversation_id) if r.sender == "bot"]
    assert bot == ["Which account would you like the balance for, checking or savings?",
                   "Your Checking account balance is $1,234.56."]
    with session_scope(env.database_url) as session:
        stored = session.get_one(Conversation, conversation_id).lex_session_state or ""
    assert stored and "CheckBalance" not in stored  # sealed, not readable
