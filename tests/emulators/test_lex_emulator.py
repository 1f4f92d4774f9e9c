"""Tests of the Amazon Lex V2 runtime emulator (emulators/lex).

The HTTP tests run the real app on a loopback port and talk to it only through boto3's
``lexv2-runtime`` client, so they also prove the wire protocol matches botocore's service model.
The unit tests at the end exercise the pure engine, parsers and bot-file loader directly.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.lex import nlu
from emulators.lex.app import DEFAULT_BOTS_DIR, create_app
from emulators.lex.botdef import BotDefinitionError, load_bots_dir, parse_bot
from emulators.lex.engine import DIALOG_ACTION_TYPES, INTENT_STATES, Conversation, LexEngine
from emulators.lex.slot_values import extract_alphanumeric, extract_date, extract_number
from tests.emulators.aws import lex_client
from tools.harness.servers import serve_asgi

BANK = "BANKINGBOT"
PAY = "PAYMENTBOT"
ALIAS = "TSTALIASID"
LOCALE = "en_US"
TODAY = date(2025, 1, 15)


# ----------------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def lex_url() -> Iterator[str]:
    with serve_asgi(create_app()) as base_url:
        yield base_url


def make_client(url: str, **config: Any) -> Any:
    return lex_client(url, **config)


@pytest.fixture(scope="module")
def lex(lex_url: str) -> Any:
    return make_client(lex_url)


def new_session() -> str:
    return f"test-{uuid.uuid4().hex}"


def say(client: Any, bot: str, session: str, text: str, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = client.recognize_text(
        botId=bot, botAliasId=ALIAS, localeId=LOCALE, sessionId=session, text=text, **extra
    )
    return response


def intent_of(response: dict[str, Any]) -> dict[str, Any]:
    intent: dict[str, Any] = response["sessionState"]["intent"]
    return intent


def action_of(response: dict[str, Any]) -> dict[str, Any]:
    action: dict[str, Any] = response["sessionState"]["dialogAction"]
    return action


def texts(response: dict[str, Any]) -> list[str]:
    return [m["content"] for m in response.get("messages", []) if m["contentType"] == "PlainText"]


def decode_lex_header(value: str) -> Any:
    """What a Lex client does with PutSession's x-amz-lex-* headers: base64, then gunzip, then JSON."""
    return json.loads(gzip.decompress(base64.b64decode(value)))


# ----------------------------------------------------------------------------------------------------------
# BankingBot over HTTP


def test_balance_journey_elicits_account_type_with_card_then_fulfils(lex: Any) -> None:
    session = new_session()
    first = say(lex, BANK, session, "what is my balance")

    assert first["sessionId"] == session
    assert action_of(first) == {"type": "ElicitSlot", "slotToElicit": "AccountType"}
    assert intent_of(first) == {
        "name": "CheckBalance",
        "slots": {"AccountType": None},
        "state": "InProgress",
        "confirmationState": "None",
    }
    assert first["messages"][0] == {
        "contentType": "PlainText",
        "content": "Which account would you like the balance for, checking or savings?",
    }
    card_message = first["messages"][1]
    assert card_message["contentType"] == "ImageResponseCard"
    card = card_message["imageResponseCard"]
    assert card["title"] == "Account type"
    assert card["subtitle"]
    assert card["buttons"] == [{"text": "Checking", "value": "Checking"}, {"text": "Savings", "value": "Savings"}]
    top = first["interpretations"][0]
    assert top["intent"]["name"] == "CheckBalance"
    assert top["nluConfidence"]["score"] == pytest.approx(1.0)
    assert top["interpretationSource"] == "Lex"
    assert "FallbackIntent" in [i["intent"]["name"] for i in first["interpretations"]]
    assert first["sessionState"]["originatingRequestId"] == first["ResponseMetadata"]["RequestId"]

    second = say(lex, BANK, session, "Checking")
    assert action_of(second) == {"type": "Close"}
    assert intent_of(second)["state"] == "Fulfilled"
    assert intent_of(second)["slots"] == {
        "AccountType": {
            "value": {"originalValue": "Checking", "interpretedValue": "Checking", "resolvedValues": ["Checking"]}
        }
    }
    assert second["messages"] == [
        {"contentType": "PlainText", "content": "Your Checking account balance is $1,234.56."}
    ]

    # The fulfilled intent is over: the next utterance starts a new one, here with the slot in it.
    third = say(lex, BANK, session, "balance for my savings account")
    assert intent_of(third)["name"] == "CheckBalance"
    assert intent_of(third)["state"] == "Fulfilled"
    assert intent_of(third)["slots"]["AccountType"]["value"]["originalValue"] == "savings"
    assert intent_of(third)["slots"]["AccountType"]["value"]["interpretedValue"] == "Savings"
    assert texts(third) == ["Your Savings account balance is $8,765.43."]


def test_account_type_synonym_and_retry_prompt(lex: Any) -> None:
    session = new_session()
    say(lex, BANK, session, "check my balance")
    unclear = say(lex, BANK, session, "the blue one")
    assert action_of(unclear) == {"type": "ElicitSlot", "slotToElicit": "AccountType"}
    assert texts(unclear) == ["Which account would you like the balance for, checking or savings?"]
    answered = say(lex, BANK, session, "my chequing account please")
    assert intent_of(answered)["slots"]["AccountType"]["value"]["interpretedValue"] == "Checking"
    assert texts(answered) == ["Your Checking account balance is $1,234.56."]


@pytest.mark.parametrize(
    "utterance",
    ["I want to talk to an agent", "talk to a human", "agent please", "speak to someone", "representative"],
)
def test_talk_to_agent_is_recognised_and_closed(lex: Any, utterance: str) -> None:
    response = say(lex, BANK, new_session(), utterance)
    assert intent_of(response) == {
        "name": "TalkToAgent",
        "slots": {},
        "state": "Fulfilled",
        "confirmationState": "None",
    }
    assert action_of(response) == {"type": "Close"}
    assert texts(response) == ["Sure, let me connect you with an agent."]
    assert response["interpretations"][0]["nluConfidence"]["score"] >= 0.8


def test_asking_for_an_agent_while_a_slot_is_elicited_switches_intent(lex: Any) -> None:
    session = new_session()
    assert action_of(say(lex, BANK, session, "what is my balance"))["type"] == "ElicitSlot"
    switched = say(lex, BANK, session, "talk to a human")
    assert intent_of(switched)["name"] == "TalkToAgent"
    assert intent_of(switched)["state"] == "Fulfilled"
    assert texts(switched) == ["Sure, let me connect you with an agent."]


def test_sentiment_is_negative_for_an_angry_sentence(lex: Any) -> None:
    response = say(lex, BANK, new_session(), "This is terrible, I'm so angry, your bot is useless")
    sentiment = response["interpretations"][0]["sentimentResponse"]
    assert sentiment["sentiment"] == "NEGATIVE"
    scores = sentiment["sentimentScore"]
    assert set(scores) == {"positive", "negative", "neutral", "mixed"}
    assert scores["negative"] > max(scores["positive"], scores["neutral"], scores["mixed"])
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)


def test_sentiment_is_positive_for_thanks_and_absent_when_disabled(lex: Any) -> None:
    happy = say(lex, BANK, new_session(), "thanks, that is great, I want to know my balance")
    assert happy["interpretations"][0]["sentimentResponse"]["sentiment"] == "POSITIVE"
    assert intent_of(happy)["name"] == "CheckBalance"
    payments = say(lex, PAY, new_session(), "this is terrible")
    assert all("sentimentResponse" not in i for i in payments["interpretations"])


def test_unrecognised_utterance_goes_to_fallback(lex: Any) -> None:
    response = say(lex, BANK, new_session(), "do penguins like pizza on mars")
    assert intent_of(response)["name"] == "FallbackIntent"
    assert intent_of(response)["slots"] == {}
    assert intent_of(response)["state"] == "ReadyForFulfillment"
    assert action_of(response) == {"type": "Close"}
    assert texts(response) == ["Sorry, I didn't catch that. You can ask for your balance or ask to talk to an agent."]
    top = response["interpretations"][0]
    assert top["intent"]["name"] == "FallbackIntent"
    assert "nluConfidence" not in top
    assert all(i["nluConfidence"]["score"] < 0.4 for i in response["interpretations"][1:])


# ----------------------------------------------------------------------------------------------------------
# PaymentsBot over HTTP


def test_payment_with_the_amount_first_then_the_account(lex: Any) -> None:
    """Slots said up front are kept; the missing ones are asked in the bot's order (the article's own
    order, turn by turn, is tests/emulators/test_lex_payments.py)."""
    session = new_session()
    start = say(lex, PAY, session, "I want to pay two hundred fifty dollars")
    assert intent_of(start)["name"] == "ProcessPayment"
    assert intent_of(start)["slots"]["PaymentAmount"]["value"]["interpretedValue"] == "250"
    assert {name for name, value in intent_of(start)["slots"].items() if value is None} == {
        "AccountId", "CreditCardNumber", "ExpirationDate", "CVV",
    }
    assert action_of(start) == {"type": "ElicitSlot", "slotToElicit": "AccountId"}
    assert texts(start) == ["Sure. What is your account ID?"]

    account = say(lex, PAY, session, "it's 5678")
    assert intent_of(account)["slots"]["AccountId"]["value"]["interpretedValue"] == "5678"
    assert action_of(account)["slotToElicit"] == "CreditCardNumber"

    card = say(lex, PAY, session, "my card number is 4111 1111 1111 1234")
    card_value = intent_of(card)["slots"]["CreditCardNumber"]["value"]
    assert card_value["interpretedValue"] == "4111111111111234"
    assert card_value["originalValue"] == "4111 1111 1111 1234"
    assert action_of(card) == {"type": "ConfirmIntent"}
    assert texts(card) == ["Just to confirm, the card number is 4111 1111 1111 1234, is that correct?"]

    confirmed = say(lex, PAY, session, "yes please")
    assert intent_of(confirmed)["confirmationState"] == "Confirmed"
    assert action_of(confirmed)["slotToElicit"] == "ExpirationDate"

    expiry = say(lex, PAY, session, "it expires 05/27")
    assert intent_of(expiry)["slots"]["ExpirationDate"]["value"]["interpretedValue"] == "2027-05-31"
    assert action_of(expiry)["slotToElicit"] == "CVV"

    done = say(lex, PAY, session, "my cvv is 987")
    assert action_of(done) == {"type": "Close"}
    assert intent_of(done)["state"] == "Fulfilled"
    assert texts(done)[0] == (
        "I will go ahead and process the $250 payment on your account using the card ending in 1234."
    )
    assert intent_of(done)["slots"]["CVV"]["value"]["interpretedValue"] == "987"

    # A new intent starts afterwards.
    balance = say(lex, PAY, session, "what is my balance")
    assert intent_of(balance)["name"] == "GetBalanceAmount"
    assert texts(balance) == ["The balance due on your account is $100."]


def test_wait_and_continue_on_the_card_number(lex: Any) -> None:
    session = new_session()
    say(lex, PAY, session, "make a payment of 75")
    start = say(lex, PAY, session, "1234")
    assert action_of(start)["slotToElicit"] == "CreditCardNumber"

    waiting = say(lex, PAY, session, "hold on, let me find my card")
    assert intent_of(waiting)["state"] == "Waiting"
    assert action_of(waiting) == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}
    assert texts(waiting) == ["Sure"]
    assert intent_of(waiting)["slots"]["CreditCardNumber"] is None

    still = say(lex, PAY, session, "hmm")
    assert intent_of(still)["state"] == "Waiting"
    assert intent_of(still)["slots"]["CreditCardNumber"] is None

    ready = say(lex, PAY, session, "ok I'm ready")
    assert intent_of(ready)["state"] == "InProgress"
    assert action_of(ready) == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}
    assert texts(ready) == ["Ok please go ahead"]

    again = say(lex, PAY, session, "one sec")
    assert intent_of(again)["state"] == "Waiting"
    given_card = say(lex, PAY, session, "4000 1234 5678 9010")
    assert intent_of(given_card)["state"] == "InProgress"
    assert intent_of(given_card)["slots"]["CreditCardNumber"]["value"]["interpretedValue"] == "4000123456789010"
    assert action_of(given_card) == {"type": "ConfirmIntent"}


# ----------------------------------------------------------------------------------------------------------
# Session APIs over HTTP


def test_session_and_request_attributes(lex: Any) -> None:
    session = new_session()
    first = say(
        lex,
        BANK,
        session,
        "what is my balance",
        sessionState={"sessionAttributes": {"customerId": "42", "channel": "web"}},
        requestAttributes={"x-trace": "abc"},
    )
    assert first["sessionState"]["sessionAttributes"] == {"customerId": "42", "channel": "web"}
    assert first["requestAttributes"] == {"x-trace": "abc"}
    second = say(lex, BANK, session, "savings")
    assert second["sessionState"]["sessionAttributes"] == {"customerId": "42", "channel": "web"}
    assert "requestAttributes" not in second
    assert intent_of(second)["state"] == "Fulfilled"


def test_get_put_delete_session_round_trip(lex: Any) -> None:
    session = new_session()
    put = lex.put_session(
        botId=BANK,
        botAliasId=ALIAS,
        localeId=LOCALE,
        sessionId=session,
        sessionState={
            "sessionAttributes": {"customerId": "7"},
            "dialogAction": {"type": "ElicitSlot", "slotToElicit": "AccountType"},
            "intent": {"name": "CheckBalance", "state": "InProgress"},
        },
        requestAttributes={"source": "test"},
        responseContentType="text/plain; charset=utf-8",
    )
    assert put["sessionId"] == session
    assert put["contentType"].startswith("text/plain")
    state = decode_lex_header(put["sessionState"])
    assert state["intent"] == {
        "name": "CheckBalance",
        "slots": {"AccountType": None},
        "state": "InProgress",
        "confirmationState": "None",
    }
    assert state["dialogAction"] == {"type": "ElicitSlot", "slotToElicit": "AccountType"}
    assert state["sessionAttributes"] == {"customerId": "7"}
    messages = decode_lex_header(put["messages"])
    assert messages[0]["content"] == "Which account would you like the balance for, checking or savings?"
    assert decode_lex_header(put["requestAttributes"]) == {"source": "test"}
    assert put["audioStream"].read() == b""

    got = lex.get_session(botId=BANK, botAliasId=ALIAS, localeId=LOCALE, sessionId=session)
    assert got["sessionId"] == session
    assert got["sessionState"]["intent"]["name"] == "CheckBalance"
    assert got["sessionState"]["dialogAction"] == {"type": "ElicitSlot", "slotToElicit": "AccountType"}
    assert got["sessionState"]["sessionAttributes"] == {"customerId": "7"}

    # The state put drives the next turn: "savings" answers the AccountType question.
    answered = say(lex, BANK, session, "savings")
    assert texts(answered) == ["Your Savings account balance is $8,765.43."]
    after = lex.get_session(botId=BANK, botAliasId=ALIAS, localeId=LOCALE, sessionId=session)
    assert after["sessionState"]["intent"]["state"] == "Fulfilled"
    assert after["messages"] == answered["messages"]
    assert after["interpretations"][0]["intent"]["name"] == "CheckBalance"
    assert after["sessionState"]["sessionAttributes"] == {"customerId": "7"}

    deleted = lex.delete_session(botId=BANK, botAliasId=ALIAS, localeId=LOCALE, sessionId=session)
    assert (deleted["botId"], deleted["botAliasId"], deleted["localeId"], deleted["sessionId"]) == (
        BANK,
        ALIAS,
        LOCALE,
        session,
    )
    with pytest.raises(lex.exceptions.ResourceNotFoundException):
        lex.get_session(botId=BANK, botAliasId=ALIAS, localeId=LOCALE, sessionId=session)


def test_put_session_with_delegate_asks_the_next_missing_slot(lex: Any) -> None:
    session = new_session()
    put = lex.put_session(
        botId=PAY,
        botAliasId=ALIAS,
        localeId=LOCALE,
        sessionId=session,
        sessionState={
            "dialogAction": {"type": "Delegate"},
            "intent": {
                "name": "ProcessPayment",
                "slots": {
                    "AccountId": {"value": {"originalValue": "1234", "interpretedValue": "1234"}},
                    "PaymentAmount": {"value": {"originalValue": "40", "interpretedValue": "40"}},
                },
            },
        },
    )
    state = decode_lex_header(put["sessionState"])
    assert state["dialogAction"] == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}
    assert decode_lex_header(put["messages"])[0]["content"] == "What is the credit card number you would like to use?"
    assert "requestAttributes" not in put


# ----------------------------------------------------------------------------------------------------------
# Errors over HTTP


def test_unknown_bot_alias_and_locale_are_resource_not_found(lex: Any) -> None:
    session = new_session()
    with pytest.raises(lex.exceptions.ResourceNotFoundException) as unknown_bot:
        lex.recognize_text(botId="UNKNOWNBOT", botAliasId=ALIAS, localeId=LOCALE, sessionId=session, text="hi")
    assert unknown_bot.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert unknown_bot.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "UNKNOWNBOT" in unknown_bot.value.response["Error"]["Message"]
    with pytest.raises(lex.exceptions.ResourceNotFoundException):
        lex.recognize_text(botId=BANK, botAliasId="NOSUCHALIAS", localeId=LOCALE, sessionId=session, text="hi")
    with pytest.raises(lex.exceptions.ResourceNotFoundException):
        lex.recognize_text(botId=BANK, botAliasId=ALIAS, localeId="fr_FR", sessionId=session, text="hi")
    with pytest.raises(lex.exceptions.ResourceNotFoundException):
        lex.get_session(botId="UNKNOWNBOT", botAliasId=ALIAS, localeId=LOCALE, sessionId=session)
    with pytest.raises(lex.exceptions.ResourceNotFoundException):
        lex.get_session(botId=BANK, botAliasId=ALIAS, localeId=LOCALE, sessionId=new_session())


def test_empty_text_is_a_validation_exception(lex: Any, lex_url: str) -> None:
    with pytest.raises(lex.exceptions.ValidationException) as blank:
        say(lex, BANK, new_session(), "   ")
    assert blank.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "text" in blank.value.response["Error"]["Message"]
    # botocore refuses "" client-side; with its validation off the emulator must refuse it too.
    unchecked = make_client(lex_url, parameter_validation=False)
    with pytest.raises(unchecked.exceptions.ValidationException):
        say(unchecked, BANK, new_session(), "")


def test_invalid_session_state_is_a_validation_exception(lex: Any) -> None:
    with pytest.raises(lex.exceptions.ValidationException):
        lex.put_session(
            botId=BANK,
            botAliasId=ALIAS,
            localeId=LOCALE,
            sessionId=new_session(),
            sessionState={"intent": {"name": "NoSuchIntent"}, "dialogAction": {"type": "Close"}},
        )
    with pytest.raises(lex.exceptions.ValidationException):
        say(
            lex,
            BANK,
            new_session(),
            "hello",
            sessionState={"dialogAction": {"type": "ElicitSlot", "slotToElicit": "AccountType"}},
        )


# ----------------------------------------------------------------------------------------------------------
# Pure unit tests: engine, parsers, bot files


@pytest.fixture(scope="module")
def bots() -> dict[str, Any]:
    return load_bots_dir(DEFAULT_BOTS_DIR)


@pytest.fixture(scope="module")
def payments(bots: dict[str, Any]) -> LexEngine:
    return LexEngine(bots[PAY], today=lambda: TODAY)


@pytest.fixture(scope="module")
def banking(bots: dict[str, Any]) -> LexEngine:
    return LexEngine(bots[BANK], today=lambda: TODAY)


def turn(engine: LexEngine, conversation: Conversation | None, text: str) -> Conversation:
    return engine.recognize_text(conversation, "unit-session", text, request_id="req-1")


def test_bot_files_define_the_documented_bots(bots: dict[str, Any]) -> None:
    assert set(bots) == {BANK, PAY}
    assert list(bots[BANK].intents) == ["CheckBalance", "AccountOptions", "TalkToAgent", "FallbackIntent"]
    assert list(bots[PAY].intents) == ["ProcessPayment", "GetBalanceAmount", "TalkToAgent", "FallbackIntent"]
    for bot in bots.values():
        assert ALIAS in bot.alias_ids
        assert LOCALE in bot.locale_ids
    assert bots[BANK].sentiment_analysis is True
    assert bots[PAY].sentiment_analysis is False
    assert [s.name for s in bots[PAY].intents["ProcessPayment"].slots] == [
        "AccountId",
        "PaymentAmount",
        "CreditCardNumber",
        "ExpirationDate",
        "CVV",
    ]


def _minimal_bot(**overrides: Any) -> dict[str, Any]:
    bot: dict[str, Any] = {
        "botId": "TESTBOT123",
        "botName": "TestBot",
        "aliasIds": [ALIAS],
        "localeIds": [LOCALE],
        "intents": [
            {"name": "Hello", "sampleUtterances": ["hello there"], "closingResponse": "Hi!"},
            {"name": "FallbackIntent", "closingResponse": "What?"},
        ],
    }
    bot.update(overrides)
    return bot


def test_parse_bot_accepts_a_minimal_bot_and_rejects_broken_ones() -> None:
    engine = LexEngine(parse_bot(_minimal_bot()))
    reply = engine.recognize_text(None, "s1", "hello there", request_id="r")
    assert reply.messages == [{"contentType": "PlainText", "content": "Hi!"}]
    assert reply.state.intent is not None and reply.state.intent.state == "Fulfilled"

    with pytest.raises(BotDefinitionError, match="10 upper-case"):
        parse_bot(_minimal_bot(botId="lowercase1"))
    with pytest.raises(BotDefinitionError, match="FallbackIntent"):
        parse_bot(_minimal_bot(intents=[{"name": "Hello", "sampleUtterances": ["hi"]}]))
    with pytest.raises(BotDefinitionError, match="unknown slot"):
        parse_bot(
            _minimal_bot(
                intents=[
                    {"name": "Hello", "sampleUtterances": ["hi {Name}"]},
                    {"name": "FallbackIntent"},
                ]
            )
        )
    with pytest.raises(BotDefinitionError, match="slot type"):
        parse_bot(
            _minimal_bot(
                intents=[
                    {
                        "name": "Hello",
                        "sampleUtterances": ["hi"],
                        "slots": [{"name": "X", "slotType": "AMAZON.Nope", "prompt": "x?"}],
                    },
                    {"name": "FallbackIntent"},
                ]
            )
        )


def test_load_bots_dir_rejects_duplicate_ids(tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(_minimal_bot()), encoding="utf-8")
    with pytest.raises(BotDefinitionError, match="defined twice"):
        load_bots_dir(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-05-31", "2027-05-31"),
        ("05/27", "2027-05-31"),
        ("it expires 12/2028", "2028-12-31"),
        ("next month", "2025-02-28"),
        ("tomorrow", "2025-01-16"),
        ("May 2027", "2027-05-31"),
        ("March 3rd", "2025-03-03"),
        ("3 January 2026", "2026-01-03"),
        ("1/10/2026", "2026-01-10"),
    ],
)
def test_date_values_resolve_like_lex(text: str, expected: str) -> None:
    value = extract_date(text, TODAY)
    assert value is not None
    assert value.interpreted == expected
    assert value.resolved == (expected,)


def test_unparseable_dates_are_rejected() -> None:
    assert extract_date("whenever", TODAY) is None
    assert extract_date("13/27", TODAY) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250", "250"),
        ("$1,200.50 please", "1200.5"),
        ("two hundred fifty", "250"),
        ("twenty-five dollars", "25"),
        ("one two three", "123"),
        ("one thousand and five", "1005"),
    ],
)
def test_number_values(text: str, expected: str) -> None:
    value = extract_number(text)
    assert value is not None and value.interpreted == expected


@given(st.integers(min_value=0, max_value=10**9))
def test_numbers_round_trip(number: int) -> None:
    value = extract_number(f"pay {number} now")
    assert value is not None and value.interpreted == str(number)


def test_alphanumeric_values() -> None:
    card = extract_alphanumeric("it is 4111-1111 1111 1111.", whole_utterance=False)
    assert card is not None and card.interpreted == "4111111111111111"
    assert extract_alphanumeric("no digits here", whole_utterance=False) is None
    word = extract_alphanumeric("ABC", whole_utterance=True)
    assert word is not None and word.weak and word.interpreted == "ABC"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        ("Yeah, go ahead", "yes"),
        ("sure thing", "yes"),
        ("no", "no"),
        ("nope, cancel it", "no"),
        ("that's not right", "no"),
        ("maybe later", None),
    ],
)
def test_yes_no(text: str, expected: str | None) -> None:
    assert nlu.classify_yes_no(text) == expected


@given(st.text(max_size=80))
def test_sentiment_scores_are_a_distribution_with_the_label_on_top(text: str) -> None:
    result = nlu.analyze_sentiment(text)
    scores = result["sentimentScore"]
    assert isinstance(scores, dict)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert result["sentiment"] == max(scores, key=lambda k: scores[k]).upper()


def test_nlu_ranking_tolerates_typos_and_falls_back(banking: LexEngine) -> None:
    ranking = banking.rank("chek my balanse")
    assert ranking[0].intent == "CheckBalance"
    assert ranking[0].score >= 0.6
    assert banking.rank("do penguins like pizza")[0].score < 0.4
    filled = banking.rank("what is my savings balance")[0]
    assert filled.slots["AccountType"].interpreted_value == "Savings"


def test_engine_payment_with_relative_expiry_date(payments: LexEngine) -> None:
    conversation = turn(payments, None, "I want to pay 20 dollars")
    for text in ("1234", "4111111111111111", "yes", "next month"):
        conversation = turn(payments, conversation, text)
    assert conversation.state.intent is not None
    expiry = conversation.state.intent.slots["ExpirationDate"]
    assert expiry is not None and expiry.interpreted_value == "2025-02-28"
    assert conversation.state.dialog_action is not None
    assert conversation.state.dialog_action.slot_to_elicit == "CVV"
    conversation = turn(payments, conversation, "321")
    assert conversation.messages[0]["content"].endswith("card ending in 1111.")


def test_engine_slot_retries_end_in_fallback(banking: LexEngine) -> None:
    conversation = turn(banking, None, "what is my balance")
    for _ in range(2):
        conversation = turn(banking, conversation, "purple")
        assert conversation.state.intent is not None and conversation.state.intent.name == "CheckBalance"
    conversation = turn(banking, conversation, "purple")
    assert conversation.state.intent is not None and conversation.state.intent.name == "FallbackIntent"


def test_engine_does_not_mutate_the_previous_conversation(banking: LexEngine) -> None:
    first = turn(banking, None, "what is my balance")
    before = first.state.to_wire()
    turn(banking, first, "checking")
    assert first.state.to_wire() == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=1, max_size=40).filter(lambda s: s.strip()), min_size=1, max_size=4))
def test_engine_survives_any_utterances(payments: LexEngine, utterances: list[str]) -> None:
    conversation: Conversation | None = None
    for text in utterances:
        conversation = turn(payments, conversation, text)
        wire = conversation.recognize_text_response(None)
        assert wire["sessionState"]["dialogAction"]["type"] in DIALOG_ACTION_TYPES
        assert wire["sessionState"]["intent"]["state"] in INTENT_STATES
        assert 1 <= len(wire["interpretations"]) <= 5
        json.dumps(wire)


def test_healthz_in_process() -> None:
    async def probe() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://lex") as client:
            return await client.get("/healthz")

    response = asyncio.run(probe())
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_emulator_imports_nothing_from_lexdesk_packages() -> None:
    forbidden = ("shared", "services", "workers", "lexdesk")
    package_dir = DEFAULT_BOTS_DIR.parent
    for source in package_dir.rglob("*.py"):
        for line in source.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                module = stripped.split()[1]
                assert module.split(".")[0] not in forbidden, f"{source.name}: {stripped}"
