"""Transcript links: what a customer gets at the end of a chat to download its transcript.

`/transcript/<conversation id>?expires=<unix time>&sig=<HMAC>` works until it expires
(LEXDESK_TRANSCRIPT_LINK_TTL) for that conversation only. The HMAC covers both, under a key derived
from LEXDESK_RESUME_TOKEN_SECRET for this purpose alone, so a link is never valid as a resume token
or a conversation handle, and no other conversation's link can be made from it. The transcript it
serves is the stored one: card data redacted as it was stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

PATH = "/transcript/{conversation_id}"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"lexdesk transcript link v1", hashlib.sha256).digest()


def _sig(secret: str, conversation_id: str, expires: int) -> str:
    digest = hmac.new(_key(secret), f"{conversation_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(secret: str, conversation_id: str, ttl: float, now: float | None = None) -> str:
    """The link's path and query (relative: the callback app serves it, beside the chat page)."""
    expires = int((time.time() if now is None else now) + ttl)
    path = PATH.format(conversation_id=conversation_id)
    return f"{path}?expires={expires}&sig={_sig(secret, conversation_id, expires)}"


def verify(secret: str, conversation_id: str, expires: str | None, sig: str | None,
           now: float | None = None) -> str | None:
    """None if the link is good, else what is wrong with it (for the 403's message)."""
    try:
        uuid.UUID(conversation_id)
        expires_at = int(expires or "")
    except ValueError:
        return "this is not a transcript link"
    if not sig or not hmac.compare_digest(sig, _sig(secret, conversation_id, expires_at)):
        return "this transcript link is not valid"
    if (time.time() if now is None else now) >= expires_at:
        return "this transcript link has expired"
    return None
