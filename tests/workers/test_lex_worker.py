"""The lex queue's consumer, called directly: turns stored in order, card data never stored in clear."""

from __future__ import annotations

import boto3
import pytest
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
    _say(conversation_id, "I want to make a payment", "$250", CARD, "123", "05/27", "yes", answer_each=True)

    rows = _rows(env, conversation_id)
    stored = " ".join(f"{r.body} {r.sealed_body} {r.payload}" for r in rows)
    assert "4111111111111111" not in stored.replace(" ", "") and "4111 1111" not in stored
    assert all(r.sealed_body is None for r in rows), "sealed copies are wiped once Lex has them"

    # Answers to the card, CVV and expiry prompts are masked whole; the rest stays readable for the agent.
    assert [r.body for r in rows if r.sender == "customer"] == [
        "I want to make a payment", "$250", "[redacted]", "[redacted]", "[redacted]", "yes"]
    assert "05/27" not in stored and "2027-05" not in stored
    # The prompts for them say so, for the chat page (docs/protocol.md §2, `lex`); no other prompt does.
    flagged = [r.body for r in rows if r.sender == "bot" and r.payload["lex"].get("sensitive_answer")]
    assert flagged == ["What is the credit card number you would like to use?",
                       "What is the three digit security code (CVV) on the back of the card?",
                       "What is the card's expiration date?"]
    # Lex's confirmation names the card's last four digits only.
    assert any("ending in 1111" in r.body for r in rows if r.sender == "bot")
    assert rows[-1].body.startswith("Thank you. Your payment of $250.00"), rows[-1].body

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


def test_a_waiting_intent_gets_still_waiting_prompts_until_the_customer_answers(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.clients.factory import lex_client
    from shared.settings import get_settings
    from workers import timers

    monkeypatch.setenv("LEXDESK_LEX_BOT_ID", "PAYMENTBOT")
    monkeypatch.setenv("LEXDESK_WAITING_PROMPT_INTERVAL", "20")
    monkeypatch.setenv("LEXDESK_WAITING_TIMEOUT", "60")
    get_settings.cache_clear()
    lex_client.cache_clear()
    conversation_id = _conversation(env)
    _say(conversation_id, "I want to make a payment", "$250", "hold on, let me get my card", answer_each=True)
    rows = _rows(env, conversation_id)
    # It answered the card number prompt, so it is stored masked, like any answer to that prompt.
    waited = next(r for r in rows if r.sender == "customer" and r.intent_state == "Waiting")
    assert waited.body == "[redacted]"
    assert (rows[-1].kind, rows[-1].event) == ("event", "waiting")

    # What Celery would run at each countdown (20 s, 40 s, 60 s): two prompts, then the time-out message.
    for prompts_sent in (1, 2, 3):
        timers.still_waiting(conversation_id=conversation_id, since_seq=waited.seq, prompts_sent=prompts_sent)
    server_turns = [r.body for r in _rows(env, conversation_id) if r.seq > rows[-1].seq]
    assert server_turns == [timers.WAITING_PROMPT_TEXT, timers.WAITING_PROMPT_TEXT, timers.WAITING_TIMEOUT_TEXT]

    # A new series stops as soon as the customer has written.
    _say(conversation_id, "ok I have it")
    before = len(_rows(env, conversation_id))
    timers.still_waiting(conversation_id=conversation_id, since_seq=waited.seq, prompts_sent=1)
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
