"""Whether a bot answer may be cut short (``allowInterrupt``) reaches lexdesk through the models API.

RecognizeText has no field for it (over a stream Lex acts on it itself), so lexdesk reads it with
``describe_slot`` (a slot's prompt and its wait-and-continue responses) and ``describe_intent`` (the
closing response). These tests check, through real boto3 ``lexv2-models`` and lexdesk's own
:class:`shared.clients.lex_models.LexModels`, that the values come from the bot file, and that the
multi-message answers lexdesk paces (the PaymentsBot's closing, the BankingBot's AccountOptions) are
served whole by the runtime.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.lex import ids
from emulators.lex.app import DEFAULT_BOTS_DIR, create_app
from emulators.lex.botdef import BotDefinitionError, parse_bot
from shared.clients.lex_models import LexModels
from tests.emulators.aws import lex_client
from tools.harness.servers import serve_asgi

PAY = "PAYMENTBOT"
BANK = "BANKINGBOT"
LOCALE = "en_US"
FAKE_AWS = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}


def client(service: str, url: str) -> Any:
    return lex_client(url, service)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_asgi(create_app()) as base_url:
        yield base_url


def describe_intent(url: str, bot_id: str, intent: str) -> dict[str, Any]:
    described: dict[str, Any] = client("lexv2-models", url).describe_intent(
        botId=bot_id, botVersion="DRAFT", localeId=LOCALE, intentId=ids.intent_id(bot_id, LOCALE, intent)
    )
    return described


def describe_slot(url: str, bot_id: str, intent: str, slot: str) -> dict[str, Any]:
    described: dict[str, Any] = client("lexv2-models", url).describe_slot(
        botId=bot_id, botVersion="DRAFT", localeId=LOCALE, intentId=ids.intent_id(bot_id, LOCALE, intent),
        slotId=ids.slot_id(bot_id, LOCALE, intent, slot),
    )
    return described


def groups(*texts: str) -> list[dict[str, Any]]:
    return [{"message": {"plainTextMessage": {"value": text}}} for text in texts]


def lexdesk_models(url: str, bot_id: str) -> LexModels:
    return LexModels(bot_id=bot_id, bot_alias_id="TSTALIASID", locale_id=LOCALE, region="us-east-1",
                     endpoint_url=url, credentials=FAKE_AWS)


# ----------------------------------------------------------------------------------------------------------
# The shipped bots


def test_the_payment_closing_is_two_messages_that_may_be_interrupted(url: str) -> None:
    closing = describe_intent(url, PAY, "ProcessPayment")["intentClosingSetting"]
    assert closing == {
        "closingResponse": {
            "messageGroups": groups(
                "I will go ahead and process the ${PaymentAmount} payment on your account using the card ending"
                " in {CreditCardNumber}.",
                "The payment went through. Your confirmation code is {ConfirmationCode}",
            ),
            "allowInterrupt": True,
        },
        "active": True,
    }
    assert lexdesk_models(url, PAY).closing_allows_interrupt("ProcessPayment") is True


def test_the_card_read_back_is_a_confirmation_right_after_the_card_slot(url: str) -> None:
    setting = describe_intent(url, PAY, "ProcessPayment")["intentConfirmationSetting"]
    assert setting["promptSpecification"]["messageGroups"] == groups(
        "Just to confirm, the card number is {CreditCardNumber}, is that correct?"
    )
    assert setting["confirmationNextStep"] == {"dialogAction": {"type": "ElicitSlot", "slotToElicit": "ExpirationDate"}}
    assert setting["declinationNextStep"] == {
        "dialogAction": {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}
    }
    card = describe_slot(url, PAY, "ProcessPayment", "CreditCardNumber")["valueElicitationSetting"]
    assert card["slotCaptureSetting"] == {"captureNextStep": {"dialogAction": {"type": "ConfirmIntent"}}}
    assert "slotCaptureSetting" not in describe_slot(url, PAY, "ProcessPayment", "CVV")["valueElicitationSetting"]


def test_the_card_slot_and_its_waits_say_what_may_be_interrupted(url: str) -> None:
    raw = json.loads((DEFAULT_BOTS_DIR / "paymentbot.json").read_text(encoding="utf-8"))
    slot = next(s for s in raw["intents"][0]["slots"] if s["name"] == "CreditCardNumber")
    wait = slot["waitAndContinue"]
    setting = describe_slot(url, PAY, "ProcessPayment", "CreditCardNumber")["valueElicitationSetting"]
    assert setting["promptSpecification"]["allowInterrupt"] is slot.get("allowInterrupt", True)
    spec = setting["waitAndContinueSpecification"]
    assert spec["waitingResponse"] == {"messageGroups": groups("Sure"), "allowInterrupt": False}
    assert spec["continueResponse"] == {"messageGroups": groups("Ok please go ahead"), "allowInterrupt": True}
    assert spec["stillWaitingResponse"] == {
        "messageGroups": groups("Take your time. Let me know when you are ready."),
        "frequencyInSeconds": wait["stillWaitingResponse"]["frequencyInSeconds"],
        "timeoutInSeconds": wait["stillWaitingResponse"]["timeoutInSeconds"],
        "allowInterrupt": wait["stillWaitingResponse"]["allowInterrupt"],
    }
    prompt = lexdesk_models(url, PAY).slot("ProcessPayment", "CreditCardNumber")
    assert prompt is not None and prompt.wait_and_continue is not None
    assert prompt.wait_and_continue.waiting == ("Sure",)
    assert prompt.wait_and_continue.continuing == ("Ok please go ahead",)


ACCOUNT_OPTIONS = [
    "We offer a Checking account for everyday spending, with no monthly fee and a free debit card.",
    "We also offer a Savings account that earns interest every month, with no minimum balance.",
    "Which one would you like to know more about?",
]


@pytest.mark.parametrize("utterance", ["what accounts do you offer", "tell me about your accounts"])
def test_the_banking_bot_answers_account_options_in_three_messages(url: str, utterance: str) -> None:
    answer = client("lexv2-runtime", url).recognize_text(
        botId=BANK, botAliasId="TSTALIASID", localeId=LOCALE, sessionId=f"s-{uuid.uuid4().hex}", text=utterance
    )
    assert answer["messages"] == [{"contentType": "PlainText", "content": text} for text in ACCOUNT_OPTIONS]
    assert answer["sessionState"]["intent"]["name"] == "AccountOptions"
    assert answer["sessionState"]["intent"]["state"] == "Fulfilled"
    assert answer["sessionState"]["dialogAction"] == {"type": "Close"}
    closing = describe_intent(url, BANK, "AccountOptions")["intentClosingSetting"]["closingResponse"]
    assert closing == {"messageGroups": groups(*ACCOUNT_OPTIONS), "allowInterrupt": True}
    assert lexdesk_models(url, BANK).closing_allows_interrupt("AccountOptions") is True


@pytest.mark.parametrize("utterance", ["what can you do", "hello", "are you still there?"])
def test_account_options_leave_other_questions_to_the_fallback(url: str, utterance: str) -> None:
    answer = client("lexv2-runtime", url).recognize_text(
        botId=BANK, botAliasId="TSTALIASID", localeId=LOCALE, sessionId=f"s-{uuid.uuid4().hex}", text=utterance
    )
    assert answer["sessionState"]["intent"]["name"] == "FallbackIntent"


# ----------------------------------------------------------------------------------------------------------
# The values come from the file: a bot that forbids interruptions


def _uninterruptible_bot() -> dict[str, Any]:
    return {
        "botId": "NOINTRBOT1",
        "botName": "NoInterruptBot",
        "aliasIds": ["TSTALIASID"],
        "localeIds": [LOCALE],
        "intents": [
            {
                "name": "Pay",
                "sampleUtterances": ["pay"],
                "slots": [
                    {"name": "Card", "slotType": "AMAZON.AlphaNumeric", "prompt": "Card?", "allowInterrupt": False,
                     "waitAndContinue": {"waitingResponse": "Sure", "continueResponse": {
                         "messages": "Go ahead", "allowInterrupt": False}}},
                ],
                "confirmation": {"prompt": {"messages": "Sure?", "allowInterrupt": False},
                                 "declinationResponse": {"messages": "Cancelled.", "allowInterrupt": False}},
                "closingResponse": {"messages": ["Paid.", "Bye."], "allowInterrupt": False},
            },
            {"name": "FallbackIntent", "closingResponse": "What?"},
        ],
    }


def test_allow_interrupt_false_in_the_file_is_false_in_the_models_api(tmp_path: Path) -> None:
    (tmp_path / "nointerrupt.json").write_text(json.dumps(_uninterruptible_bot()), encoding="utf-8")
    with serve_asgi(create_app(tmp_path)) as base_url:
        intent = describe_intent(base_url, "NOINTRBOT1", "Pay")
        slot = describe_slot(base_url, "NOINTRBOT1", "Pay", "Card")["valueElicitationSetting"]
        models = lexdesk_models(base_url, "NOINTRBOT1")
        assert models.closing_allows_interrupt("Pay") is False
        prompt = models.slot("Pay", "Card")
    assert intent["intentClosingSetting"]["closingResponse"] == {
        "messageGroups": groups("Paid.", "Bye."), "allowInterrupt": False,
    }
    assert intent["intentConfirmationSetting"]["promptSpecification"]["allowInterrupt"] is False
    assert intent["intentConfirmationSetting"]["declinationResponse"]["allowInterrupt"] is False
    assert "confirmationNextStep" not in intent["intentConfirmationSetting"]  # confirmed at the end, as before
    assert slot["promptSpecification"]["allowInterrupt"] is False
    assert slot["waitAndContinueSpecification"]["waitingResponse"]["allowInterrupt"] is True
    assert slot["waitAndContinueSpecification"]["continueResponse"]["allowInterrupt"] is False
    assert prompt is not None and prompt.allow_interrupt is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"closingResponse": {"messages": "x", "allowInterrupt": "no"}}, "allowInterrupt"),
        ({"closingResponse": {"messages": "x", "frequencyInSeconds": 3}}, "unknown keys"),
        ({"confirmation": {"prompt": "Sure?", "afterSlot": "Nope"}}, "afterSlot"),
        ({"confirmation": {"prompt": "Sure?", "declinationNextStep": "ElicitSlot"}}, "needs afterSlot"),
        ({"confirmation": {"prompt": "Sure?", "declinationNextStep": "Retry"}}, "declinationNextStep"),
        ({"confirmation": {"prompt": "Sure?", "onDecline": "x"}}, "unknown keys"),
        ({"responseVariables": {"Code": {"generated": "lottery"}}}, "unknown generator"),
        ({"responseVariables": {"Code": {"generated": "confirmationCode", "default": "x"}}}, "no other keys"),
    ],
)
def test_bad_interrupt_and_confirmation_settings_are_rejected(change: dict[str, Any], message: str) -> None:
    bot = _uninterruptible_bot()
    bot["intents"][0].update(change)
    with pytest.raises(BotDefinitionError, match=message):
        parse_bot(bot)
