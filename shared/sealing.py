"""Card data must reach Lex (the PaymentsBot fills its card slots from it) but never the database in
clear. A customer message that carries a card number, or answers a card/CVV/expiry slot, is stored
redacted, with its clear text sealed (Fernet: AES-128-CBC + HMAC-SHA256) under LEXDESK_DATA_KEY.
The lex worker unseals it for the one RecognizeText call and then wipes the sealed copy, whatever
the outcome (delivered, dead-lettered or skipped)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet

from shared.redaction import MASK, is_sensitive_slot, redact_text


@lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    # Any operator-chosen string works as the key: it is stretched to Fernet's 32 bytes.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(f"lexdesk-sealing:{key}".encode()).digest()))


def seal(key: str, text: str) -> str:
    return _fernet(key).encrypt(text.encode()).decode()


def unseal(key: str, token: str) -> str:
    return _fernet(key).decrypt(token.encode()).decode()


def stored_form(text: str, eliciting_slot: str | None) -> tuple[str, bool]:
    """What the transcript keeps of a customer message, and whether the clear text must be sealed."""
    if eliciting_slot and is_sensitive_slot(eliciting_slot):
        return MASK, True
    redacted = redact_text(text)
    return redacted, redacted != text


def unmask_non_answer(clear: str, slot_filled: bool) -> str | None:
    """A message stored masked because it answered a card, CVV or expiry prompt, once Lex has said what
    it was: if Lex filled no sensitive slot with it and it holds no digit ("Can you wait a minute?",
    "Ok I am back"), it was not card data and the transcript keeps it as written (card-masked as every
    message is). None: it stays masked. A digit keeps it masked whatever Lex made of it: a card number
    Lex refused is still a card number."""
    if slot_filled or any(char.isdigit() for char in clear):
        return None
    return redact_text(clear)
