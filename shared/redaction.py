"""Card data never reaches the database or the logs in clear.

Digit runs of 13-19 digits (spaces and dashes allowed between them) that pass the Luhn check are
payment card numbers: all but the last four digits are masked. Slot values of card and CVV slots are
masked whole, whatever they look like, because a 3-digit CVV cannot be recognised by its shape.
"""

from __future__ import annotations

import re
from typing import Any

CARD_CANDIDATE = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
SENSITIVE_SLOTS = frozenset({"creditcardnumber", "cardnumber", "cvv", "cvc", "securitycode", "pin"})
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


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
        return match.group(0)
    return f"[card ending {digits[-4:]}]"


def redact_text(text: str) -> str:
    return CARD_CANDIDATE.sub(_mask_card, text) if text else text


def is_sensitive_slot(name: str) -> bool:
    return name.replace("_", "").lower() in SENSITIVE_SLOTS


def redact_slots(slots: dict[str, Any]) -> dict[str, Any]:
    return {
        name: (MASK if value is not None and is_sensitive_slot(name) else value)
        for name, value in slots.items()
    }
