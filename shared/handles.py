"""Conversation handles: what lexdesk gives the Lex Web UI as `talkdesk_conversation_id`.

The Lex Web UI attaches a socket to a live chat with `/talkdesk?conversationId=<value of the session
attribute talkdesk_conversation_id>`. Whoever knows that value can read and write the chat, so it
must be something only lexdesk can make: the lexdesk conversation id with an HMAC of it, under a key
derived from `LEXDESK_RESUME_TOKEN_SECRET` (shared by every edge node and the callback app; the
derivation keeps these handles and resume tokens from ever being valid as one another).

A handle names a lexdesk conversation, not a Talkdesk one: lexdesk's code hook answers Lex before the
Talkdesk conversation exists (that call is queued, retried and ordered like every other), and a
Talkdesk id is never taken from a browser, so none can be pasted into a Talkdesk URL from outside.
The value is URL-safe (letters, digits, '-', '_'), as the Lex Web UI puts it in the query string as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid

PREFIX = "lxh1"
_SHAPE = re.compile(rf"{PREFIX}_([0-9a-f]{{32}})_([A-Za-z0-9_-]{{43}})")


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"lexdesk conversation handle v1", hashlib.sha256).digest()


def _mac(secret: str, conversation_hex: str) -> str:
    digest = hmac.new(_key(secret), conversation_hex.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(secret: str, conversation_id: str) -> str:
    conversation_hex = uuid.UUID(conversation_id).hex
    return f"{PREFIX}_{conversation_hex}_{_mac(secret, conversation_hex)}"


def verify(secret: str, handle: str) -> str | None:
    """The conversation id a handle names, or None for anything lexdesk did not issue."""
    match = _SHAPE.fullmatch(handle) if isinstance(handle, str) else None
    if match is None:
        return None
    conversation_hex, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(secret, conversation_hex)):
        return None
    return str(uuid.UUID(conversation_hex))
