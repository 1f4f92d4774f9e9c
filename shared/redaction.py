"""Card data never reaches the database or the logs in clear.

Digit runs of 13-19 digits (spaces and dashes allowed between them) that pass the Luhn check are
payment card numbers: all but the last four digits are masked. Slot values of card, CVV and card
expiry slots are masked whole, whatever they look like, because a 3-digit CVV or a "12/27" cannot be
recognised by its shape. What the customer tells about themselves at `hello` (name, email, locale,
attributes) goes through the same card masking: a card number typed in a form field is no safer.
"""

from __future__ import annotations

import re
from typing import Any

# Digit runs with single spaces, dashes, dots or slashes between groups; long runs are searched for a
# card number inside them.
CARD_CANDIDATE = re.compile(r"(?<![\d])(?:\d[ ./-]{0,2}){12,}\d(?![\d])")
SENSITIVE_SLOTS = frozenset({
    "creditcardnumber", "cardnumber", "cvv", "cvc", "securitycode", "pin",
    # The card's expiry (the PaymentsBot's ExpirationDate): with the number, it is what a payment needs.
    "expirationdate", "expirydate", "expiration", "expiry", "expdate", "cardexpiration", "cardexpiry",
    "cardexpirationdate", "cardexpirydate", "creditcardexpiration", "creditcardexpirationdate",
})
MASK = "[redacted]"


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _groups(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the digit groups in a run like "4111 1111 1111 1111 12/26"."""
    return [(m.start(), m.end()) for m in re.finditer(r"\d+", text)]


def _mask_card(match: re.Match[str]) -> str:
    """Mask the longest stretch of whole digit groups that has 13-19 digits and passes Luhn: a card
    number can sit next to other digits (an expiry date, a CVV). Whole groups only, because any
    window cut out of a long number passes Luhn one time in ten."""
    text = match.group(0)
    groups = _groups(text)
    best: tuple[int, int, str] | None = None
    for i in range(len(groups)):
        for j in range(i, len(groups)):
            digits = "".join(text[a:b] for a, b in groups[i:j + 1])
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits) and (best is None or len(digits) > len(best[2])):
                best = (groups[i][0], groups[j][1], digits)
    if best is None:
        return text
    first, last, digits = best
    return f"{text[:first]}[card ending {digits[-4:]}]{text[last:]}"


def redact_text(text: str) -> str:
    return CARD_CANDIDATE.sub(_mask_card, text) if text else text


def is_sensitive_slot(name: str) -> bool:
    return name.replace("_", "").lower() in SENSITIVE_SLOTS


def redact_slots(slots: dict[str, Any]) -> dict[str, Any]:
    # Other slots keep their value, but a card number that landed in one (a free-text slot) is masked.
    return {
        name: (MASK if value is not None and is_sensitive_slot(name)
               else redact_text(value) if isinstance(value, str) else value)
        for name, value in slots.items()
    }


def redact_value(value: Any) -> Any:
    """Card numbers masked in every string of a JSON value (keys too), however deep: the hello's
    `attributes` are any JSON object, and each of its strings may reach the agent."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_text(str(key)): redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    return value


def sensitive_values(session_state: dict[str, Any]) -> list[str]:
    """The clear values of the card, CVV and expiry slots in a Lex sessionState (original and
    interpreted), so that a bot message reading one back ("the card number is 1234 5678 …") can be
    masked before it is stored: such a number need not pass Luhn, and a CVV never has a card's shape."""
    values: list[str] = []
    for name, slot in ((session_state.get("intent") or {}).get("slots") or {}).items():
        if not slot or not is_sensitive_slot(name):
            continue
        value = slot.get("value") or {}
        for key in ("originalValue", "interpretedValue"):
            if isinstance(value.get(key), str) and value[key].strip():
                values.append(value[key].strip())
    return values


def mask_values(text: str, values: list[str]) -> str:
    """Mask every occurrence of the given values in `text`: by their digits, whatever separates them
    (a card number read back with spaces where it was typed with dashes), or as written for a value
    without digits. A card number keeps its last four digits, as everywhere else, so that a customer
    asked "is that correct?" still has something to check."""
    for value in sorted(set(values), key=len, reverse=True):
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 3:
            pattern = r"(?<!\d)" + r"[\s./-]*".join(re.escape(d) for d in digits) + r"(?!\d)"
            masked = f"[card ending {digits[-4:]}]" if len(digits) >= 13 else MASK
            text = re.sub(pattern, masked, text)
        elif not digits:
            text = re.sub(re.escape(value), MASK, text, flags=re.IGNORECASE)
    return text
