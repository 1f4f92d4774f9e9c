"""Pure functions: the domain rules, card redaction, resume tokens and the client frame models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.edge import tokens
from shared.domain import (
    ALLOWED_TRANSITIONS,
    BotTurn,
    InvalidTransition,
    TranscriptLine,
    backoff_seconds,
    check_transition,
    destination_for_customer_message,
    handoff_request,
    intents_traversed,
    is_escalation,
    last_sentiment,
)
from shared.models import ConversationState as S
from shared.models import Destination
from shared.protocol import (
    CLIENT_FRAMES,
    Ack,
    CustomerMessage,
    Hello,
    Resume,
    describe_validation_error,
    error_frame,
)
from shared.redaction import (
    MASK,
    is_sensitive_slot,
    luhn_valid,
    mask_values,
    redact_slots,
    redact_text,
    redact_value,
    sensitive_values,
)
from shared.sealing import stored_form, unmask_non_answer

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


# -- shared/domain.py ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "destination"), [
    ("bot", Destination.LEX),
    ("handoff_failed", Destination.LEX),
    ("handoff_requested", Destination.TALKDESK),
    ("agent_queued", Destination.TALKDESK),
    ("agent_active", Destination.TALKDESK),
    ("closed", None),
])
def test_destination_for_customer_message(state: str, destination: Destination | None) -> None:
    assert destination_for_customer_message(state) == destination


def test_destination_for_every_state_is_defined() -> None:
    for state in S:
        destination_for_customer_message(state.value)  # no state falls through the match
    with pytest.raises(ValueError):
        destination_for_customer_message("limbo")


@pytest.mark.parametrize(("current", "new"), [
    (S.BOT, S.HANDOFF_REQUESTED),
    (S.BOT, S.CLOSED),
    (S.HANDOFF_REQUESTED, S.AGENT_QUEUED),
    (S.HANDOFF_REQUESTED, S.AGENT_ACTIVE),
    (S.HANDOFF_REQUESTED, S.HANDOFF_FAILED),
    (S.AGENT_QUEUED, S.AGENT_ACTIVE),
    (S.AGENT_QUEUED, S.HANDOFF_FAILED),  # Talkdesk lost the conversation
    (S.AGENT_ACTIVE, S.HANDOFF_FAILED),
    (S.AGENT_ACTIVE, S.CLOSED),
    (S.HANDOFF_FAILED, S.HANDOFF_REQUESTED),
    (S.HANDOFF_FAILED, S.CLOSED),
])
def test_allowed_transitions(current: S, new: S) -> None:
    assert check_transition(current.value, new) is new


@pytest.mark.parametrize(("current", "new"), [
    (S.BOT, S.AGENT_ACTIVE),
    (S.BOT, S.AGENT_QUEUED),
    (S.BOT, S.BOT),
    (S.AGENT_ACTIVE, S.BOT),
    (S.AGENT_ACTIVE, S.AGENT_QUEUED),
    (S.AGENT_QUEUED, S.HANDOFF_REQUESTED),
    (S.HANDOFF_FAILED, S.AGENT_ACTIVE),
    (S.CLOSED, S.BOT),
    (S.CLOSED, S.CLOSED),
])
def test_forbidden_transitions(current: S, new: S) -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_transition(current.value, new)
    assert current.value in str(caught.value)
    assert new.value in str(caught.value)


def test_every_state_but_closed_can_close() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(S)
    for state in S:
        if state is not S.CLOSED:
            assert check_transition(state.value, S.CLOSED) is S.CLOSED


def turn(intent: str | None, state: str | None) -> BotTurn:
    return BotTurn(messages=[], intent=intent, intent_state=state, dialog_action="Close")


def test_is_escalation() -> None:
    assert is_escalation(turn("TalkToAgent", "Fulfilled"), "TalkToAgent")
    assert is_escalation(turn("TalkToAgent", "ReadyForFulfillment"), "TalkToAgent")
    assert is_escalation(turn("TalkToAgent", None), "TalkToAgent")
    assert not is_escalation(turn("TalkToAgent", "Failed"), "TalkToAgent")
    assert not is_escalation(turn("CheckBalance", "Fulfilled"), "TalkToAgent")
    assert not is_escalation(turn(None, None), "TalkToAgent")
    assert is_escalation(turn("Escalate", "Fulfilled"), "Escalate")


def line(sender: str, text: str, minutes: int, intent: str | None = None, sentiment: str | None = None
         ) -> TranscriptLine:
    return TranscriptLine(sender, text, T0 + timedelta(minutes=minutes), intent, sentiment)


TRANSCRIPT = [
    line("customer", "what is my balance", 0, "CheckBalance", "NEUTRAL"),
    line("bot", "Which account?", 1),
    line("customer", "savings", 2, "CheckBalance", "NEUTRAL"),
    line("bot", "", 3),  # a card-only answer: nothing to show the agent
    line("system", "connecting you to an agent", 4),
    line("customer", "this is useless", 5, "FallbackIntent", "NEGATIVE"),
    line("agent", "Hi, I'm Alex", 6),
    line("customer", "I want to talk to an agent", 7, "TalkToAgent", None),
]


def test_handoff_request_previous_messages() -> None:
    body = handoff_request(touchpoint_id="tp-1", customer_name="Dana", customer_email="dana@example.com",
                           attributes={"phone": "+15550100", "page": "https://bank.example.com/help"},
                           transcript=TRANSCRIPT)
    assert body["previous_messages"] == [
        {"type": "USER", "content": "what is my balance", "created_at": "2024-05-01T10:00:00+00:00"},
        {"type": "EXTERNAL", "content": "Which account?", "created_at": "2024-05-01T10:01:00+00:00"},
        {"type": "USER", "content": "savings", "created_at": "2024-05-01T10:02:00+00:00"},
        {"type": "USER", "content": "this is useless", "created_at": "2024-05-01T10:05:00+00:00"},
        # An agent of an earlier Talkdesk conversation of this chat (Talkdesk lost it): the next one sees it.
        {"type": "EXTERNAL", "content": "Agent: Hi, I'm Alex", "created_at": "2024-05-01T10:06:00+00:00"},
        {"type": "USER", "content": "I want to talk to an agent", "created_at": "2024-05-01T10:07:00+00:00"},
    ]
    assert body["touchpoint_id"] == "tp-1"
    assert body["subject"] == "Chat with Dana"
    assert body["contact_person"] == {"email": "dana@example.com"}
    assert body["context_parameters"] == {
        "contact_name": "Dana",
        "contact_phone": "+15550100",
        "contact_reason": "Intents: CheckBalance > FallbackIntent > TalkToAgent; Sentiment: NEGATIVE",
        "website_location": "https://bank.example.com/help",
    }


def test_handoff_request_for_an_anonymous_customer_without_a_transcript() -> None:
    body = handoff_request(touchpoint_id="tp-1", customer_name=None, customer_email=None, attributes={},
                           transcript=[])
    assert body["subject"] == "Chat with a website customer"
    assert body["contact_person"] == {"email": ""}
    assert body["previous_messages"] == []
    assert body["context_parameters"] == {
        "contact_name": "", "contact_phone": "", "contact_reason": "Asked for an agent", "website_location": "",
    }


def test_handoff_request_website_location_falls_back_to_the_attribute() -> None:
    body = handoff_request(touchpoint_id="tp", customer_name="A", customer_email=None,
                           attributes={"website_location": "https://x.example/y"}, transcript=[])
    assert body["context_parameters"]["website_location"] == "https://x.example/y"


def test_contact_reason_intents_first_seen_order_and_last_sentiment() -> None:
    lines = [
        line("customer", "a", 0, "B", "POSITIVE"),
        line("customer", "b", 1, "A", None),
        line("customer", "c", 2, "B", "MIXED"),
        line("customer", "d", 3, "C", None),
    ]
    assert intents_traversed(lines) == ["B", "A", "C"]
    assert last_sentiment(lines) == "MIXED"
    assert last_sentiment([line("customer", "x", 0)]) is None
    reason = handoff_request(touchpoint_id="tp", customer_name=None, customer_email=None, attributes={},
                             transcript=lines)["context_parameters"]["contact_reason"]
    assert reason == "Intents: B > A > C; Sentiment: MIXED"
    only_sentiment = handoff_request(touchpoint_id="tp", customer_name=None, customer_email=None, attributes={},
                                     transcript=[line("customer", "hi", 0, None, "NEGATIVE")])
    assert only_sentiment["context_parameters"]["contact_reason"] == "Sentiment: NEGATIVE"


def test_backoff_grows_exponentially() -> None:
    delays = [backoff_seconds(attempt, 0.5, 60.0, None, jitter=1.0) for attempt in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff_seconds(0, 0.5, 60.0, None, jitter=1.0) == 0.5  # attempt 0 counts as the first


def test_backoff_jitter_spans_the_upper_half() -> None:
    assert backoff_seconds(3, 1.0, 60.0, None, jitter=0.0) == 2.0
    assert backoff_seconds(3, 1.0, 60.0, None, jitter=0.5) == 3.0
    assert 2.0 <= backoff_seconds(3, 1.0, 60.0, None, jitter=0.999) < 4.0


def test_backoff_is_capped() -> None:
    assert backoff_seconds(30, 0.5, 60.0, None, jitter=1.0) == 60.0
    assert backoff_seconds(100, 0.5, 60.0, None, jitter=0.0) == 30.0
    assert max(backoff_seconds(a, 0.5, 60.0, None, jitter=0.99) for a in range(1, 60)) <= 60.0


def test_backoff_never_before_retry_after() -> None:
    assert backoff_seconds(1, 0.5, 60.0, 3.0, jitter=0.0) == 3.0
    assert backoff_seconds(1, 0.5, 60.0, 120.0, jitter=0.0) == 120.0  # Retry-After beats the cap
    assert backoff_seconds(8, 0.5, 60.0, 3.0, jitter=1.0) == 60.0  # the backoff is already longer
    assert backoff_seconds(1, 0.5, 60.0, 0.0, jitter=1.0) == 0.5


# -- shared/redaction.py -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("4111111111111111", "[card ending 1111]"),
    ("my card is 4111 1111 1111 1111, thanks", "my card is [card ending 1111], thanks"),
    ("4111-1111-1111-1111", "[card ending 1111]"),
    ("5555 5555 5555 4444", "[card ending 4444]"),
    ("amex 3782 822463 10005 please", "amex [card ending 0005] please"),
    ("4222222222222", "[card ending 2222]"),  # 13 digits
    ("6011 0000 0000 0000 001", "[card ending 0001]"),  # 19 digits
    ("two: 4111111111111111 and 5555555555554444.", "two: [card ending 1111] and [card ending 4444]."),
])
def test_luhn_valid_card_numbers_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", [
    "4111111111111112",  # fails Luhn
    "1234 5678 9012 3456",
    "call me on +1 415 555 0100",
    "(415) 555-0100",
    "+44 20 7946 0958",
    "order 123456789012",  # 12 digits: too short
    "41111111111111111111",  # 20 digits: too long
    "account 000123, amount $1,234.56",
    "",
])
def test_other_numbers_are_untouched(text: str) -> None:
    assert redact_text(text) == text


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert luhn_valid("4111111111111111")


def test_redact_slots_masks_card_and_cvv_whatever_the_value() -> None:
    slots = {
        "CreditCardNumber": "4111111111111111",
        "CVV": "123",
        "card_number": "not even digits",
        "SecurityCode": "9",
        "PIN": "0000",
        "cvc": "",
        "PaymentAmount": "50",
        "ExpirationDate": "2030-12-31",
        "AccountType": None,
    }
    assert redact_slots(slots) == {
        "CreditCardNumber": MASK,
        "CVV": MASK,
        "card_number": MASK,
        "SecurityCode": MASK,
        "PIN": MASK,
        "cvc": MASK,
        "PaymentAmount": "50",
        "ExpirationDate": MASK,
        "AccountType": None,
    }
    assert redact_slots({"CreditCardNumber": None}) == {"CreditCardNumber": None}  # nothing to hide
    assert is_sensitive_slot("Credit_Card_Number")
    assert not is_sensitive_slot("CardType")


def test_an_answer_to_an_expiry_prompt_is_stored_masked_and_sealed() -> None:
    """Issue 7: the PaymentsBot's ExpirationDate answer ("12/27") was stored in clear."""
    for slot in ("ExpirationDate", "expiration_date", "CardExpiry", "ExpiryDate"):
        assert is_sensitive_slot(slot), slot
        assert stored_form("12/27", slot) == (MASK, True)
    assert stored_form("12/27", "PaymentAmount") == ("12/27", False)


def test_a_card_number_in_any_other_slot_is_masked() -> None:
    assert redact_slots({"Notes": "use 4111 1111 1111 1111", "PaymentAmount": "250"}) == {
        "Notes": "use [card ending 1111]", "PaymentAmount": "250"}


def test_card_numbers_are_masked_at_any_depth_of_a_json_value() -> None:
    """The hello's attributes are any JSON object, and its strings reach the agent."""
    value = {"page": "/pay?card=4111111111111111", "n": 1, "ok": True, "none": None,
             "nested": {"list": ["5555 5555 5555 4444", 2.5, {"deep": "4111-1111-1111-1111"}]},
             "4111111111111111": "a card as a key"}
    assert redact_value(value) == {
        "page": "/pay?card=[card ending 1111]", "n": 1, "ok": True, "none": None,
        "nested": {"list": ["[card ending 4444]", 2.5, {"deep": "[card ending 1111]"}]},
        "[card ending 1111]": "a card as a key"}


# -- services/edge/tokens.py -----------------------------------------------------------------------------

SECRET = b"resume-token-secret-for-tests"
CONVERSATION = "3f2b8c1e-9d4a-4c7e-8f1a-2b3c4d5e6f70"


def test_token_round_trip() -> None:
    token = tokens.issue(SECRET, CONVERSATION, ttl=60, now=1_800_000_000)
    assert token.startswith(f"v2.{CONVERSATION}.1800000060.")
    assert tokens.verify(SECRET, token, now=1_800_000_059) == CONVERSATION
    # Deterministic: any node issues the same token at the same second.
    assert tokens.issue(SECRET, CONVERSATION, ttl=60, now=1_800_000_000) == token
    assert tokens.verify(SECRET, tokens.issue(SECRET, CONVERSATION)) == CONVERSATION  # now, default TTL


def test_an_expired_token_is_refused() -> None:
    """Issue 7: a token kept from an old chat opened its whole transcript for ever."""
    token = tokens.issue(SECRET, CONVERSATION, ttl=3600, now=1_800_000_000)
    assert tokens.verify(SECRET, token, now=1_800_003_599) == CONVERSATION
    assert tokens.verify(SECRET, token, now=1_800_003_600) is None
    assert tokens.verify(SECRET, tokens.issue(SECRET, CONVERSATION, ttl=1, now=1_000_000_000)) is None


def test_a_token_whose_expiry_was_pushed_out_is_refused() -> None:
    token = tokens.issue(SECRET, CONVERSATION, ttl=60, now=1_800_000_000)
    version, rest = token.split(".", 1)
    signed, _, mac = rest.rpartition(".")
    conversation_id, _, _ = signed.rpartition(".")
    for expires in ("9999999999", "1800000061", "01800000060", "+1800000060", "1800000060.5", "\uff11\uff18"):
        assert tokens.verify(SECRET, f"{version}.{conversation_id}.{expires}.{mac}", now=1_800_000_000) is None


def test_a_token_of_the_first_format_is_refused() -> None:
    """`<id>.<mac>` tokens never expired: honouring them would keep every old transcript open."""
    import base64
    import hashlib
    import hmac

    digest = hmac.new(SECRET, f"resume:{CONVERSATION}".encode(), hashlib.sha256).digest()
    old = f"{CONVERSATION}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"
    assert tokens.verify(SECRET, old) is None


def test_altered_mac_is_refused() -> None:
    token = tokens.issue(SECRET, CONVERSATION)
    last = token[-1]
    altered = token[:-1] + ("A" if last != "A" else "B")
    assert tokens.verify(SECRET, altered) is None
    assert tokens.verify(SECRET, token[:-2]) is None
    assert tokens.verify(SECRET, token + "x") is None


def test_altered_conversation_id_is_refused() -> None:
    token = tokens.issue(SECRET, CONVERSATION)
    mac = token.rpartition(".")[2]
    other = "00000000-0000-0000-0000-000000000000"
    assert tokens.verify(SECRET, f"{other}.{mac}") is None
    assert tokens.verify(SECRET, tokens.issue(SECRET, other)) == other


@pytest.mark.parametrize("garbage", ["", ".", "abc", "abc.", ".abc", "not-a-token", "a.b.c", "..", " "])
def test_garbage_is_refused(garbage: str) -> None:
    assert tokens.verify(SECRET, garbage) is None


def test_token_from_another_secret_is_refused() -> None:
    token = tokens.issue(b"another-deployment-secret", CONVERSATION)
    assert tokens.verify(SECRET, token) is None


# -- shared/protocol.py --------------------------------------------------------------------------------


def test_hello_with_everything_optional() -> None:
    hello = Hello.model_validate({"type": "hello"})
    assert hello.customer is None and hello.locale is None and hello.attributes is None
    full = Hello.model_validate({"type": "hello", "customer": {"name": "Dana", "email": "d@example.com"},
                                 "locale": "en_US", "attributes": {"page": "/help", "n": 1}})
    assert full.customer is not None
    assert full.customer.name == "Dana"
    assert full.attributes == {"page": "/help", "n": 1}
    assert Hello.model_validate({"type": "hello", "customer": {}}).customer is not None


def test_customer_message_requires_id_and_text() -> None:
    message = CustomerMessage.model_validate({"type": "message", "id": "m-1", "text": "hi"})
    assert (message.id, message.text) == ("m-1", "hi")
    for data, field in [
        ({"type": "message", "text": "hi"}, "id"),
        ({"type": "message", "id": "m-1"}, "text"),
        ({"type": "message", "id": "m-1", "text": ""}, "text"),
        ({"type": "message", "id": "", "text": "hi"}, "id"),
        ({"type": "message", "id": "x" * 129, "text": "hi"}, "id"),
    ]:
        with pytest.raises(ValidationError) as caught:
            CustomerMessage.model_validate(data)
        assert describe_validation_error(caught.value).startswith(f"{field}: "), data


def test_unknown_fields_are_ignored() -> None:
    message = CustomerMessage.model_validate({"type": "message", "id": "m-1", "text": "hi", "future": {"x": 1}})
    assert "future" not in message.model_dump()
    hello = Hello.model_validate({"type": "hello", "customer": {"name": "D", "phone": "+1"}, "v": 2})
    assert hello.customer is not None
    assert "phone" not in hello.customer.model_dump()


def test_ack_seq_must_not_be_negative() -> None:
    assert Ack.model_validate({"type": "ack", "seq": 0}).seq == 0
    assert Ack.model_validate({"type": "ack", "seq": 42}).seq == 42
    with pytest.raises(ValidationError) as caught:
        Ack.model_validate({"type": "ack", "seq": -1})
    assert describe_validation_error(caught.value).startswith("seq: ")
    with pytest.raises(ValidationError):
        Ack.model_validate({"type": "ack"})


def test_resume_defaults_and_limits() -> None:
    assert Resume.model_validate({"type": "resume", "resume_token": "t"}).last_seq == 0
    with pytest.raises(ValidationError) as caught:
        Resume.model_validate({"type": "resume", "resume_token": "t", "last_seq": -3})
    assert "last_seq" in describe_validation_error(caught.value)


def test_describe_validation_error_names_nested_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        Hello.model_validate({"type": "hello", "customer": {"name": "x" * 201}, "locale": 5})
    description = describe_validation_error(caught.value)
    assert "customer.name: " in description
    assert "locale: " in description
    assert "; " in description


def test_client_frames_table_and_error_frame() -> None:
    data: dict[str, Any] = {"type": "ping"}
    assert CLIENT_FRAMES["ping"].model_validate(data).type == "ping"
    # The contract's seven, and the after-chat `rating` (an extension, docs/protocol.md §2).
    assert set(CLIENT_FRAMES) == {"hello", "resume", "message", "typing", "ack", "end", "ping", "rating"}
    assert error_frame("bad_frame", "nope", "m-1") == {"type": "error", "code": "bad_frame", "message": "nope",
                                                       "id": "m-1"}
    assert error_frame("not_started", "hello first") == {"type": "error", "code": "not_started",
                                                         "message": "hello first"}


@pytest.mark.parametrize(
    "text", ["card 4111 1111 1111 1111 12/26", "4111111111111111 123", "order 12 4111111111111111"])
def test_card_number_next_to_other_digits_is_masked(text: str) -> None:
    redacted = redact_text(text)
    assert "[card ending 1111]" in redacted
    assert "4111111111111111" not in redacted.replace(" ", "")


@pytest.mark.parametrize("garbage", ["abc.é", "conversation.ü", "x.\u2603"])
def test_non_ascii_garbage_token_is_refused(garbage: str) -> None:
    assert tokens.verify(b"secret", garbage) is None


def test_a_card_number_read_back_by_the_bot_is_masked_by_its_digits_whatever_its_shape() -> None:
    state = {"intent": {"slots": {
        "CreditCardNumber": {"value": {"originalValue": "1234 5678 1234 5678", "interpretedValue": "1234567812345678"}},
        "CVV": {"value": {"originalValue": "123", "interpretedValue": "123"}},
        "ExpirationDate": {"value": {"originalValue": "december twenty twenty seven", "interpretedValue": "2027-12"}},
        "PaymentAmount": {"value": {"originalValue": "$100", "interpretedValue": "100"}},
        "AccountId": None,
    }}}
    values = sensitive_values(state)
    assert "100" not in values and "$100" not in values  # an amount is no card data
    # "1234 5678 1234 5678" fails the Luhn check: only the slot says it is a card number.
    assert redact_text("the card number is 1234-5678-1234-5678") == "the card number is 1234-5678-1234-5678"
    assert mask_values("Just to confirm, the card number is 1234-5678 1234 5678, is that correct?", values) == \
        "Just to confirm, the card number is [card ending 5678], is that correct?"
    assert mask_values("CVV 123 and expiry 2027-12, December Twenty Twenty Seven", values) == \
        "CVV [redacted] and expiry [redacted], [redacted]"
    # The last four digits alone are what the bot may say ("the card ending in 5678"); so is the amount.
    assert mask_values("the $100 payment using the card ending in 5678", values) == \
        "the $100 payment using the card ending in 5678"


def test_an_answer_to_a_card_prompt_is_kept_as_written_only_when_it_was_no_card_data() -> None:
    assert unmask_non_answer("Can you wait a minute?", slot_filled=False) == "Can you wait a minute?"
    assert unmask_non_answer("Ok I am back", slot_filled=False) == "Ok I am back"
    assert unmask_non_answer("one two three", slot_filled=True) is None  # Lex took it as the CVV
    assert unmask_non_answer("1234 5678 1234 5678", slot_filled=False) is None  # refused by Lex, still a card
    assert unmask_non_answer("it is 12/27 I think", slot_filled=False) is None
