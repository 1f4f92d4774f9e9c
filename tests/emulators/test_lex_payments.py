"""The PaymentsBot holds the dialogue of AWS's "How to deliver natural conversational experiences using
Amazon Lex Streaming APIs", turn by turn over RecognizeText.

lexdesk's demos and its wait-and-continue and pacing code are built against that conversation, so the
bot texts, intent states and dialog actions are pinned here exactly, through real boto3
``lexv2-runtime`` against the emulator on a loopback port. The bot file keeps a card expiry date the
article does not have; it is asked right after the card number is confirmed, before the CVV.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.lex import ids
from emulators.lex.app import create_app
from tests.emulators.aws import lex_client
from tools.harness.servers import serve_asgi

PAY = "PAYMENTBOT"
ALIAS = "TSTALIASID"
LOCALE = "en_US"
CODE_RE = re.compile(r"^[A-Z0-9]{6}$")
CARD_PROMPT = "What is the credit card number you would like to use?"
EXPIRY_PROMPT = "What is the card's expiration date?"
CVV_PROMPT = "What is the three digit security code (CVV) on the back of the card?"
AGENT = "Sure, let me connect you with an agent."


@pytest.fixture(scope="module")
def lex() -> Iterator[Any]:
    with serve_asgi(create_app()) as url:
        yield lex_client(url)


def new_session() -> str:
    return f"pay-{uuid.uuid4().hex}"


def say(lex: Any, session: str, text: str) -> dict[str, Any]:
    response: dict[str, Any] = lex.recognize_text(
        botId=PAY, botAliasId=ALIAS, localeId=LOCALE, sessionId=session, text=text
    )
    return response


def texts(response: dict[str, Any]) -> list[str]:
    return [m["content"] for m in response.get("messages", [])]


def intent(response: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = response["sessionState"]["intent"]
    return found


def action(response: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = response["sessionState"]["dialogAction"]
    return found


def value(response: dict[str, Any], slot: str) -> dict[str, Any]:
    """A slot's value in sessionState, checked to be the same in the top interpretation."""
    slot_value: dict[str, Any] = intent(response)["slots"][slot]["value"]
    assert response["interpretations"][0]["intent"]["slots"][slot]["value"] == slot_value
    assert set(slot_value) == {"originalValue", "interpretedValue", "resolvedValues"}
    return slot_value


def start_to_card_prompt(lex: Any, session: str) -> None:
    """Steps 1-3 of the article: the account, the amount, then the card number prompt."""
    say(lex, session, "I'd like to make a payment on my account")
    say(lex, session, "Yes the account ID is 1234")
    assert texts(say(lex, session, "$100")) == [CARD_PROMPT]


# ----------------------------------------------------------------------------------------------------------
# The article, line by line


def test_the_articles_dialogue_turn_by_turn(lex: Any) -> None:
    session = new_session()

    first = say(lex, session, "I'd like to make a payment on my account")
    assert texts(first) == ["Sure. What is your account ID?"]
    assert intent(first)["name"] == "ProcessPayment"
    assert intent(first)["state"] == "InProgress"
    assert action(first) == {"type": "ElicitSlot", "slotToElicit": "AccountId"}
    assert set(intent(first)["slots"].values()) == {None}

    account = say(lex, session, "Yes the account ID is 1234")
    assert texts(account) == ["The balance due is $100. How much would you like to pay today?"]
    assert value(account, "AccountId") == {
        "originalValue": "1234", "interpretedValue": "1234", "resolvedValues": ["1234"],
    }
    assert intent(account)["slots"]["PaymentAmount"] is None  # an account id is not an amount
    assert action(account) == {"type": "ElicitSlot", "slotToElicit": "PaymentAmount"}

    amount = say(lex, session, "$100")
    assert texts(amount) == [CARD_PROMPT]
    assert value(amount, "PaymentAmount") == {
        "originalValue": "$100", "interpretedValue": "100", "resolvedValues": ["100"],
    }
    assert intent(amount)["slots"]["CreditCardNumber"] is None  # "$100" is not a card number
    assert action(amount) == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}

    wait = say(lex, session, "Can you wait a minute?")
    assert texts(wait) == ["Sure"]
    assert intent(wait)["state"] == "Waiting"
    assert action(wait) == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}
    assert intent(wait)["slots"]["CreditCardNumber"] is None

    back = say(lex, session, "Ok I am back")
    assert texts(back) == ["Ok please go ahead"]
    assert intent(back)["state"] == "InProgress"
    assert action(back) == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}

    card = say(lex, session, "1234 5678 1234 5678")  # fails the Luhn check: Lex takes it all the same
    assert texts(card) == ["Just to confirm, the card number is 1234 5678 1234 5678, is that correct?"]
    assert value(card, "CreditCardNumber") == {
        "originalValue": "1234 5678 1234 5678",
        "interpretedValue": "1234567812345678",
        "resolvedValues": ["1234567812345678"],
    }
    assert action(card) == {"type": "ConfirmIntent"}
    assert (intent(card)["state"], intent(card)["confirmationState"]) == ("InProgress", "None")

    confirmed = say(lex, session, "Yes")
    assert texts(confirmed) == [EXPIRY_PROMPT]  # the bot file's one addition to the article
    assert intent(confirmed)["confirmationState"] == "Confirmed"
    assert action(confirmed) == {"type": "ElicitSlot", "slotToElicit": "ExpirationDate"}

    expiry = say(lex, session, "12/27")
    assert texts(expiry) == [CVV_PROMPT]
    assert value(expiry, "ExpirationDate")["interpretedValue"] == "2027-12-31"
    assert action(expiry) == {"type": "ElicitSlot", "slotToElicit": "CVV"}

    done = say(lex, session, "123")
    code = ids.confirmation_code(session)
    assert CODE_RE.match(code)
    assert texts(done) == [
        "I will go ahead and process the $100 payment on your account using the card ending in 5678.",
        f"The payment went through. Your confirmation code is {code}",
    ]
    assert value(done, "CVV")["interpretedValue"] == "123"
    assert (intent(done)["state"], intent(done)["confirmationState"]) == ("Fulfilled", "Confirmed")
    assert action(done) == {"type": "Close"}


def test_the_confirmation_code_is_six_upper_case_alphanumerics_per_session(lex: Any) -> None:
    codes = set()
    for _ in range(3):
        session = new_session()
        start_to_card_prompt(lex, session)
        for text in ("4111 1111 1111 1111", "yes", "December 2027"):
            say(lex, session, text)
        done = texts(say(lex, session, "321"))
        match = re.fullmatch(r"The payment went through\. Your confirmation code is ([A-Z0-9]+)", done[1])
        assert match is not None and CODE_RE.match(match.group(1)), done
        assert match.group(1) == ids.confirmation_code(session)
        codes.add(match.group(1))
    assert len(codes) == 3


# ----------------------------------------------------------------------------------------------------------
# Wait and continue, the card number read back


@pytest.mark.parametrize("wait", ["hold on", "give me a minute", "can you wait", "one sec", "Wait a second please"])
@pytest.mark.parametrize("back", ["Ok I am back", "I'm back", "I am ready", "ok go ahead"])
def test_wait_and_continue_phrases(lex: Any, wait: str, back: str) -> None:
    session = new_session()
    start_to_card_prompt(lex, session)
    waiting = say(lex, session, wait)
    assert (texts(waiting), intent(waiting)["state"]) == (["Sure"], "Waiting")
    assert action(waiting) == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}
    resumed = say(lex, session, back)
    assert (texts(resumed), intent(resumed)["state"]) == (["Ok please go ahead"], "InProgress")
    assert intent(resumed)["slots"]["CreditCardNumber"] is None


def test_a_card_number_said_while_waiting_is_taken(lex: Any) -> None:
    session = new_session()
    start_to_card_prompt(lex, session)
    say(lex, session, "hold on")
    card = say(lex, session, "1234-5678-1234-5678")
    assert value(card, "CreditCardNumber")["interpretedValue"] == "1234567812345678"
    assert texts(card) == ["Just to confirm, the card number is 1234 5678 1234 5678, is that correct?"]
    assert intent(card)["state"] == "InProgress"


def test_no_to_the_card_read_back_asks_the_number_again(lex: Any) -> None:
    session = new_session()
    start_to_card_prompt(lex, session)
    say(lex, session, "1234 5678 1234 5678")
    denied = say(lex, session, "No")
    assert texts(denied) == ["Sorry about that, let's try again.", CARD_PROMPT]
    assert action(denied) == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}
    assert intent(denied)["slots"]["CreditCardNumber"] is None
    assert (intent(denied)["state"], intent(denied)["confirmationState"]) == ("InProgress", "Denied")

    again = say(lex, session, "4111 1111 1111 1111")
    assert texts(again) == ["Just to confirm, the card number is 4111 1111 1111 1111, is that correct?"]
    assert intent(again)["confirmationState"] == "None"
    assert texts(say(lex, session, "yes that's right")) == [EXPIRY_PROMPT]


def test_a_no_with_the_right_number_is_read_back_at_once(lex: Any) -> None:
    session = new_session()
    start_to_card_prompt(lex, session)
    say(lex, session, "1234 5678 1234 5678")
    corrected = say(lex, session, "no, it is 4000 1234 5678 9010")
    assert texts(corrected) == ["Just to confirm, the card number is 4000 1234 5678 9010, is that correct?"]
    assert value(corrected, "CreditCardNumber")["interpretedValue"] == "4000123456789010"
    assert action(corrected) == {"type": "ConfirmIntent"}


@pytest.mark.parametrize("amount", ["$100", "100 dollars", "$1,234.50"])
def test_an_amount_is_not_a_card_number(lex: Any, amount: str) -> None:
    session = new_session()
    start_to_card_prompt(lex, session)
    retry = say(lex, session, amount)
    assert intent(retry)["slots"]["CreditCardNumber"] is None
    assert action(retry) == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}
    assert texts(retry) == [CARD_PROMPT]


def test_the_balance_due_comes_from_the_account(lex: Any) -> None:
    session = new_session()
    say(lex, session, "make a payment on my account")
    assert texts(say(lex, session, "my account id is 9012")) == [
        "The balance due is $1,234.50. How much would you like to pay today?"
    ]
    card = say(lex, session, "$1,234.50")
    assert value(card, "PaymentAmount")["interpretedValue"] == "1234.5"
    for text in ("4111 1111 1111 1111", "yes", "next month"):
        say(lex, session, text)
    assert texts(say(lex, session, "999"))[0] == (
        "I will go ahead and process the $1,234.50 payment on your account using the card ending in 1111."
    )


def test_slots_said_in_the_first_utterance_are_kept(lex: Any) -> None:
    session = new_session()
    first = say(lex, session, "pay $100 on account 1234")
    assert value(first, "PaymentAmount")["interpretedValue"] == "100"
    assert value(first, "AccountId")["interpretedValue"] == "1234"
    assert texts(first) == [CARD_PROMPT]
    on_account = say(lex, new_session(), "I'd like to make a payment on account 5678")
    assert value(on_account, "AccountId")["interpretedValue"] == "5678"
    assert intent(on_account)["slots"]["PaymentAmount"] is None
    assert texts(on_account) == ["The balance due is $250. How much would you like to pay today?"]


# ----------------------------------------------------------------------------------------------------------
# The hand-off to an agent, at any point


AFTER = {
    "the account prompt": ["I'd like to make a payment on my account"],
    "the amount prompt": ["I'd like to make a payment on my account", "1234"],
    "the card prompt": ["I'd like to make a payment on my account", "1234", "$100"],
    "a wait": ["I'd like to make a payment on my account", "1234", "$100", "hold on"],
    "the card read-back": ["I'd like to make a payment on my account", "1234", "$100", "1234 5678 1234 5678"],
    "the cvv prompt": ["I'd like to make a payment on my account", "1234", "$100", "4111 1111 1111 1111",
                       "yes", "12/27"],
}


@pytest.mark.parametrize("before", list(AFTER))
@pytest.mark.parametrize("ask", ["I want to talk to an agent", "agent", "representative", "human"])
def test_talk_to_agent_mid_payment(lex: Any, before: str, ask: str) -> None:
    session = new_session()
    for text in AFTER[before]:
        say(lex, session, text)
    handoff = say(lex, session, ask)
    assert texts(handoff) == [AGENT]
    assert intent(handoff) == {"name": "TalkToAgent", "slots": {}, "state": "Fulfilled", "confirmationState": "None"}
    assert action(handoff) == {"type": "Close"}


def test_talk_to_agent_first_thing(lex: Any) -> None:
    handoff = say(lex, new_session(), "I want to talk to an agent")
    assert texts(handoff) == [AGENT]
    assert handoff["interpretations"][0]["nluConfidence"]["score"] >= 0.8


# ----------------------------------------------------------------------------------------------------------
# The read-back from a state the client supplies (lexdesk replays its last state after a crash)


def _filled(**values: str) -> dict[str, Any]:
    return {name: {"value": {"originalValue": v, "interpretedValue": v}} for name, v in values.items()}


def test_put_session_delegate_reads_the_card_back_before_the_next_slot(lex: Any) -> None:
    session = new_session()
    slots = _filled(AccountId="1234", PaymentAmount="100", CreditCardNumber="1234567812345678")
    put = lex.put_session(
        botId=PAY, botAliasId=ALIAS, localeId=LOCALE, sessionId=session,
        sessionState={"dialogAction": {"type": "Delegate"}, "intent": {"name": "ProcessPayment", "slots": slots}},
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = lex.get_session(botId=PAY, botAliasId=ALIAS, localeId=LOCALE, sessionId=session)
    assert got["sessionState"]["dialogAction"] == {"type": "ConfirmIntent"}
    assert texts(got) == ["Just to confirm, the card number is 1234 5678 1234 5678, is that correct?"]


def test_a_replayed_read_back_state_takes_the_yes(lex: Any) -> None:
    state = {
        "dialogAction": {"type": "ConfirmIntent"},
        "intent": {"name": "ProcessPayment", "state": "InProgress", "confirmationState": "None",
                   "slots": _filled(AccountId="1234", PaymentAmount="100", CreditCardNumber="1234567812345678")},
    }
    answer = lex.recognize_text(botId=PAY, botAliasId=ALIAS, localeId=LOCALE, sessionId=new_session(),
                                text="yes", sessionState=state)
    assert texts(answer) == [EXPIRY_PROMPT]
    assert intent(answer)["confirmationState"] == "Confirmed"
