"""Resume tokens: `<conversation_id>.<HMAC-SHA256>`, signed with LEXDESK_RESUME_TOKEN_SECRET so any
edge node can check one without a database read, and a guessed or altered token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(secret: bytes, conversation_id: str) -> str:
    digest = hmac.new(secret, f"resume:{conversation_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(secret: bytes, conversation_id: str) -> str:
    return f"{conversation_id}.{_mac(secret, conversation_id)}"


def verify(secret: bytes, token: str) -> str | None:
    """The conversation id the token was issued for, or None."""
    conversation_id, _, mac = token.rpartition(".")
    if not conversation_id or not mac:
        return None
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a client may send anything.
    expected = _mac(secret, conversation_id).encode()
    return conversation_id if hmac.compare_digest(mac.encode("utf-8", "replace"), expected) else None
