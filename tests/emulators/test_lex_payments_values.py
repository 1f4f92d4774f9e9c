"""Slot values of the PaymentsBot parse as Lex's built-in types do, and its templates render them.

Pure unit tests of :mod:`emulators.lex.slot_values` and the engine's template filters: the dialogue
tests (test_lex_payments.py) only see a few values, while a customer may say an amount, an account id,
a card number or an expiry date in many ways, and lexdesk must see what real Lex would fill.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulators.lex import ids
from emulators.lex.engine import render_text
from emulators.lex.slot_values import extract_alphanumeric, extract_date, extract_number

TODAY = date(2025, 1, 15)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$100", "100"),
        ("100 dollars", "100"),
        ("one hundred", "100"),
        ("$1,234.50", "1234.5"),
        ("I'll pay $75.25 today", "75.25"),
        ("one hundred and twenty five dollars", "125"),
        ("100", "100"),
    ],
)
def test_amounts_are_amazon_numbers(text: str, expected: str) -> None:
    amount = extract_number(text)
    assert amount is not None
    assert (amount.interpreted, amount.resolved) == (expected, (expected,))


def test_an_amount_keeps_what_was_said_as_its_original_value() -> None:
    amount = extract_number("$1,234.50")
    assert amount is not None and amount.original == "$1,234.50"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes the account ID is 1234", "1234"),
        ("1234", "1234"),
        ("my account number is AB12 34", "AB1234"),
        ("1234 5678 1234 5678", "1234567812345678"),
        ("1234-5678-1234-5678", "1234567812345678"),
        ("the card is 4111 1111 1111 1111, thanks", "4111111111111111"),
    ],
)
def test_identifiers_are_amazon_alphanumerics(text: str, expected: str) -> None:
    found = extract_alphanumeric(text, whole_utterance=True)
    assert found is not None and found.interpreted == expected
    assert not found.weak


@pytest.mark.parametrize("text", ["$100", "100 dollars", "$1,234.50", "pay $100 please", "50 bucks"])
def test_an_amount_of_money_is_no_identifier(text: str) -> None:
    assert extract_alphanumeric(text, whole_utterance=True) is None
    assert extract_alphanumeric(text, whole_utterance=False) is None


def test_an_identifier_next_to_an_amount_is_still_found() -> None:
    found = extract_alphanumeric("pay $100 on account 1234", whole_utterance=False)
    assert found is not None and found.interpreted == "1234"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12/27", "2027-12-31"),
        ("December 2027", "2027-12-31"),
        ("dec 2027", "2027-12-31"),
        ("next month", "2025-02-28"),
        ("it expires 05/2028", "2028-05-31"),
        ("2027-12-31", "2027-12-31"),
    ],
)
def test_expiry_dates_are_amazon_dates(text: str, expected: str) -> None:
    found = extract_date(text, TODAY)
    assert found is not None and (found.interpreted, found.resolved) == (expected, (expected,))


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("${A|amount}", {"A": "100"}, "$100"),
        ("${A|amount}", {"A": "1234.5"}, "$1,234.50"),
        ("${A|money}", {"A": "100"}, "$100.00"),
        ("{C|group4}", {"C": "1234567812345678"}, "1234 5678 1234 5678"),
        ("{C|group4}", {"C": "378282246310005"}, "3782 8224 6310 005"),
        ("ending in {C|last4}", {"C": "1234567812345678"}, "ending in 5678"),
    ],
)
def test_template_filters(template: str, values: dict[str, str], expected: str) -> None:
    assert render_text(template, values) == expected


def test_confirmation_codes_are_predictable_per_session() -> None:
    assert ids.confirmation_code("session-1") == ids.confirmation_code("session-1")
    assert ids.confirmation_code("session-1") != ids.confirmation_code("session-2")


@given(st.text(min_size=2, max_size=100))
def test_confirmation_codes_are_six_upper_case_alphanumerics(session_id: str) -> None:
    code = ids.confirmation_code(session_id)
    assert len(code) == 6 and code.isalnum() and code == code.upper() and code.isascii()
