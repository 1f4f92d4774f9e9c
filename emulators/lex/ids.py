"""Resource ids of the Lex models API, derived from names so they are the same on every start.

Real Lex V2 ids are 10 upper-case letters and digits, assigned at creation; bot files only name their
intents, slots and slot types, so the emulator derives the ids: base-36 digits of
``sha256("intent" | botId | localeId | intentName)`` (``"slot"`` adds the intent and slot names,
``"slotType"`` the slot type name). A client can thus keep an id it has seen across restarts, as it can
with real Lex, and an id never depends on the order of a bot file. Ids do not depend on the bot
version, as in Lex, where a version keeps the ids of the draft it was built from. The built-in
``FallbackIntent`` has Lex's own fixed id, ``FALLBCKINT``. Payment confirmation codes come from the
same derivation (of the session id), for the same reason: a test can know them in advance.
"""

from __future__ import annotations

import hashlib

FALLBACK_INTENT_ID = "FALLBCKINT"
ID_LENGTH = 10
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def derived_id(kind: str, *names: str) -> str:
    """10 base-36 digits of the name path's SHA-256 (the first 64 bits cover 36**10 evenly enough)."""
    digest = hashlib.sha256("\x1f".join((kind, *names)).encode("utf-8")).digest()
    number = int.from_bytes(digest[:8], "big")
    digits: list[str] = []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, len(_ALPHABET))
        digits.append(_ALPHABET[digit])
    return "".join(digits)


def intent_id(bot_id: str, locale_id: str, intent_name: str) -> str:
    if intent_name == "FallbackIntent":
        return FALLBACK_INTENT_ID
    return derived_id("intent", bot_id, locale_id, intent_name)


def slot_id(bot_id: str, locale_id: str, intent_name: str, slot_name: str) -> str:
    return derived_id("slot", bot_id, locale_id, intent_name, slot_name)


def slot_type_id(bot_id: str, locale_id: str, slot_type_name: str) -> str:
    return derived_id("slotType", bot_id, locale_id, slot_type_name)


CONFIRMATION_CODE_LENGTH = 6


def confirmation_code(session_id: str) -> str:
    """A payment's confirmation code ("The payment went through. Your confirmation code is 7KQ2ZD"):
    6 upper-case letters and digits derived from the session id alone, so a test can predict it."""
    return derived_id("confirmationCode", session_id)[:CONFIRMATION_CODE_LENGTH]
