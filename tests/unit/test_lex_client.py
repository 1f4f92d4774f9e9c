"""shared/clients/lex.py: boto3 lexv2-runtime against the Lex emulator over HTTP, and `parse_turn` on plain dicts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.lex.app import create_app
from shared.clients.errors import PermanentError, TransientError
from shared.clients.lex import LexClient, parse_turn
from shared.domain import BotTurn, is_escalation
from shared.redaction import MASK
from tools.harness.servers import free_port, serve_asgi

FAKE_AWS = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}


@pytest.fixture(scope="module")
def lex_url() -> Iterator[str]:
    with serve_asgi(create_app()) as url:
        yield url


def make_client(url: str, bot_id: str = "BANKINGBOT", alias: str = "TSTALIASID", timeout: float = 5.0) -> LexClient:
    return LexClient(bot_id=bot_id, bot_alias_id=alias, locale_id="en_US", region="us-east-1",
                     endpoint_url=url, timeout=timeout, credentials=FAKE_AWS)


def session() -> str:
    return f"session-{uuid.uuid4().hex}"


def test_banking_bot_elicits_the_account_with_a_card(lex_url: str) -> None:
    turn = make_client(lex_url).recognize_text(session(), "what is my balance")
    assert isinstance(turn, BotTurn)
    assert turn.intent == "CheckBalance"
    assert turn.intent_state == "InProgress"
    assert turn.dialog_action == "ElicitSlot"
    assert turn.slot_to_elicit == "AccountType"
    assert turn.slots == {"AccountType": None}
    assert turn.messages == [
        {"text": "Which account would you like the balance for, checking or savings?"},
        {
            "text": "Account type",
            "cards": [{
                "title": "Account type",
                "subtitle": "Which account would you like the balance for?",
                "image_url": None,
                "buttons": [{"text": "Checking", "value": "Checking"}, {"text": "Savings", "value": "Savings"}],
            }],
        },
    ]
    assert turn.sentiment in ("POSITIVE", "NEGATIVE", "NEUTRAL", "MIXED")
    assert turn.sentiment_score is not None
    assert set(turn.sentiment_score) == {"positive", "negative", "neutral", "mixed"}
    assert turn.confidence is not None and 0.0 < turn.confidence <= 1.0
    assert not is_escalation(turn, "TalkToAgent")


def test_banking_bot_fulfils_the_balance_on_the_next_turn(lex_url: str) -> None:
    client = make_client(lex_url)
    session_id = session()
    client.recognize_text(session_id, "what is my balance")
    turn = client.recognize_text(session_id, "savings")
    assert turn.intent == "CheckBalance"
    assert turn.intent_state == "Fulfilled"
    assert turn.dialog_action == "Close"
    assert turn.slot_to_elicit is None
    assert turn.slots == {"AccountType": "Savings"}
    assert turn.messages == [{"text": "Your Savings account balance is $8,765.43."}]


def test_talk_to_agent_is_recognised(lex_url: str) -> None:
    turn = make_client(lex_url).recognize_text(session(), "I want to talk to an agent")
    assert turn.intent == "TalkToAgent"
    assert turn.intent_state == "Fulfilled"
    assert turn.dialog_action == "Close"
    assert turn.messages == [{"text": "Sure, let me connect you with an agent."}]
    assert is_escalation(turn, "TalkToAgent")
    assert not is_escalation(turn, "SomethingElse")


def test_session_attributes_go_to_lex_and_come_back(lex_url: str) -> None:
    turn = make_client(lex_url).recognize_text(session(), "what is my balance", {"conversation_id": "c-1"})
    assert turn.session_attributes == {"conversation_id": "c-1"}


def test_payments_bot_card_slots_come_back_redacted(lex_url: str) -> None:
    client = make_client(lex_url, bot_id="PAYMENTBOT")
    session_id = session()
    first = client.recognize_text(session_id, "I want to pay 50 dollars")
    assert first.intent == "ProcessPayment"
    assert first.slot_to_elicit == "AccountId"
    assert first.slots["PaymentAmount"] == "50"
    assert first.slots["CreditCardNumber"] is None  # nothing to hide yet
    assert client.recognize_text(session_id, "1234").slot_to_elicit == "CreditCardNumber"
    card = client.recognize_text(session_id, "4111 1111 1111 1111")
    assert card.dialog_action == "ConfirmIntent"  # the bot reads the number back (a message, not a slot)
    assert card.slots["CreditCardNumber"] == MASK
    assert card.slots["CVV"] is None
    assert client.recognize_text(session_id, "yes").slot_to_elicit == "ExpirationDate"
    assert client.recognize_text(session_id, "12/27").slot_to_elicit == "CVV"
    cvv = client.recognize_text(session_id, "123")
    assert cvv.slots["CreditCardNumber"] == MASK
    assert cvv.slots["CVV"] == MASK
    assert cvv.slots["PaymentAmount"] == "50"
    for turn in (card, cvv):  # the read-back message included: "the card number is [card ending 1111]"
        assert "4111" not in repr(turn)
    assert "[card ending 1111]" in card.messages[0]["text"]
    assert "'123'" not in repr(cvv)


def test_unknown_bot_is_permanent(lex_url: str) -> None:
    with pytest.raises(PermanentError) as caught:
        make_client(lex_url, bot_id="UNKNOWNBOT").recognize_text(session(), "hello")
    assert caught.value.status == 404
    assert caught.value.code == "ResourceNotFoundException"
    assert "UNKNOWNBOT" in str(caught.value)


def test_unknown_alias_is_permanent(lex_url: str) -> None:
    with pytest.raises(PermanentError) as caught:
        make_client(lex_url, alias="NOSUCHALIA").recognize_text(session(), "hello")
    assert caught.value.status == 404


def test_text_over_lex_limit_is_permanent(lex_url: str) -> None:
    with pytest.raises(PermanentError) as caught:
        make_client(lex_url).recognize_text(session(), "x" * 1025)
    assert caught.value.status == 400
    assert caught.value.code == "ValidationException"


def test_unreachable_endpoint_is_transient() -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(TransientError) as caught:
        client.recognize_text(session(), "hello")
    assert caught.value.transient
    assert "Lex RecognizeText" in str(caught.value)


def test_delete_session_of_unknown_session_does_not_raise(lex_url: str) -> None:
    client = make_client(lex_url)
    client.delete_session(session())  # ResourceNotFoundException is swallowed


def test_delete_session_forgets_the_dialog(lex_url: str) -> None:
    client = make_client(lex_url)
    kept, deleted = session(), session()
    for session_id in (kept, deleted):
        turn = client.recognize_text(session_id, "what is my balance", {"conversation_id": "c-9"})
        assert turn.dialog_action == "ElicitSlot"
    client.delete_session(deleted)
    assert client.recognize_text(kept, "savings").session_attributes == {"conversation_id": "c-9"}
    assert client.recognize_text(deleted, "savings").session_attributes == {}


# -- parse_turn on hand-written responses -----------------------------------------------------------------


def test_parse_turn_image_response_card() -> None:
    response: dict[str, Any] = {
        "messages": [
            {"contentType": "PlainText", "content": "Pick one"},
            {
                "contentType": "ImageResponseCard",
                "imageResponseCard": {
                    "title": "Plans",
                    "subtitle": "Choose a plan",
                    "imageUrl": "https://example.com/plan.png",
                    "buttons": [{"text": "Basic", "value": "basic"}, {"text": "Pro"}],
                },
            },
            {"contentType": "ImageResponseCard"},  # no card: dropped
            {"contentType": "PlainText", "content": ""},  # empty: dropped
            {"contentType": "SSML", "content": "<speak>Hi</speak>"},
        ],
        "sessionState": {
            "intent": {"name": "ChoosePlan", "state": "InProgress",
                       "slots": {"Plan": None, "Cvv": {"value": {"interpretedValue": "999"}}}},
            "dialogAction": {"type": "ElicitSlot", "slotToElicit": "Plan"},
            "sessionAttributes": {"k": "v"},
        },
        "interpretations": [
            {"nluConfidence": {"score": 0.87},
             "sentimentResponse": {"sentiment": "NEGATIVE", "sentimentScore": {"negative": 0.9}}},
            {"nluConfidence": {"score": 0.1}},
        ],
    }
    turn = parse_turn(response)
    assert turn.messages == [
        {"text": "Pick one"},
        {"text": "Plans", "cards": [{
            "title": "Plans", "subtitle": "Choose a plan", "image_url": "https://example.com/plan.png",
            "buttons": [{"text": "Basic", "value": "basic"}, {"text": "Pro", "value": ""}],
        }]},
        {"text": "<speak>Hi</speak>"},
    ]
    assert turn.intent == "ChoosePlan"
    assert turn.intent_state == "InProgress"
    assert turn.dialog_action == "ElicitSlot"
    assert turn.slot_to_elicit == "Plan"
    assert turn.slots == {"Plan": None, "Cvv": MASK}
    assert turn.sentiment == "NEGATIVE"
    assert turn.sentiment_score == {"negative": 0.9}
    assert turn.confidence == 0.87
    assert turn.session_attributes == {"k": "v"}


def test_parse_turn_of_an_empty_response() -> None:
    turn = parse_turn({})
    assert turn == BotTurn(messages=[], intent=None, intent_state=None, dialog_action=None, slot_to_elicit=None,
                           slots={}, sentiment=None, sentiment_score=None, confidence=None, session_attributes={})


def test_parse_turn_with_null_parts() -> None:
    turn = parse_turn({
        "messages": None,
        "sessionState": {"intent": None, "dialogAction": None, "sessionAttributes": None},
        "interpretations": [],
    })
    assert turn.messages == []
    assert turn.intent is None
    assert turn.dialog_action is None
    assert turn.slots == {}
    assert turn.session_attributes == {}
    assert turn.confidence is None


def test_parse_turn_slot_without_interpreted_value() -> None:
    turn = parse_turn({"sessionState": {"intent": {
        "name": "ProcessPayment", "state": "InProgress",
        "slots": {"PaymentAmount": {"value": {"originalValue": "fifty"}}, "CreditCardNumber": None,
                  "ExpirationDate": {"value": {"interpretedValue": "2030-12-31"}}},
    }}})
    # A card's expiry is card data: masked with the card and CVV slots (shared/redaction.py).
    assert turn.slots == {"PaymentAmount": None, "CreditCardNumber": None, "ExpirationDate": "[redacted]"}
    assert turn.sentiment is None


def test_misconfigured_bot_id_is_permanent() -> None:
    with serve_asgi(create_app()) as url:
        client = LexClient(bot_id="NOPE", bot_alias_id="TSTALIASID", locale_id="en_US", region="us-east-1",
                           endpoint_url=url, credentials={"aws_access_key_id": "x", "aws_secret_access_key": "x"})
        with pytest.raises(PermanentError):
            client.recognize_text("session-1", "hello")
