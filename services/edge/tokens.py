"""Resume tokens: `v2.<conversation_id>.<expires>.<HMAC-SHA256>`, signed with LEXDESK_RESUME_TOKEN_SECRET
so any edge node can check one without a database read, and a guessed or altered token is refused.

`expires` (Unix seconds) is signed with the id: a token stops working LEXDESK_RESUME_TOKEN_TTL after
it was issued, so a token copied out of a browser does not open the transcript for ever (every
`welcome` hands out a fresh one). The version prefix lets the format change again; tokens of the first
format (`<id>.<mac>`, which never expired) are refused, since honouring them would keep the hole open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

VERSION = "v2"
DEFAULT_TTL_SECONDS = 24 * 3600.0  # LEXDESK_RESUME_TOKEN_TTL's default; the edge passes the setting
_EXPIRES = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() would take "١٢" or " 12"


def _mac(secret: bytes, conversation_id: str, expires: str) -> str:
    # The expiry as written in the token, not as a number: "0123" and "123" must not share a MAC.
    message = f"resume:{VERSION}:{conversation_id}:{expires}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(secret: bytes, conversation_id: str, ttl: float = DEFAULT_TTL_SECONDS, now: float | None = None) -> str:
    expires = str(int((time.time() if now is None else now) + ttl))
    return f"{VERSION}.{conversation_id}.{expires}.{_mac(secret, conversation_id, expires)}"


def verify(secret: bytes, token: str, now: float | None = None) -> str | None:
    """The conversation id the token was issued for, or None (forged, altered, old format or expired)."""
    version, _, rest = token.partition(".")
    signed, _, mac = rest.rpartition(".")
    conversation_id, _, expires = signed.rpartition(".")
    if version != VERSION or not conversation_id or not mac or not _EXPIRES.fullmatch(expires):
        return None
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a client may send anything.
    expected = _mac(secret, conversation_id, expires).encode()
    if not hmac.compare_digest(mac.encode("utf-8", "replace"), expected):
        return None
    return conversation_id if int(expires) > (time.time() if now is None else now) else None
