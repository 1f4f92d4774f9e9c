"""The AWS Lex Web UI's live-chat dialect (docs/protocol.md §2, "Lex Web UI compatibility"), so an
existing Lex Web UI deployment can point `talkDeskWebsocketEndpoint` at lexdesk.

The browser connects to `/talkdesk?conversationId=<value>` with the value the bot put in the session
attribute `talkdesk_conversation_id`, sends `{"action":"onMessage","message":S,"conversationId":ID}`,
ends with close code 4000, and understands `{"event_type":"message_created","content":S,"author_name":A}`
and `{"event_type":"conversation_ended"}`. That value is a handle lexdesk's code hook signed
(shared/handles.py, shared/codehook.py); anything else is refused with close code 4401 and leaves no
row: knowing a Talkdesk or lexdesk conversation id is not enough to read or write someone's chat.
"""

from __future__ import annotations

import json
from typing import Any

from shared.protocol import MAX_JSON_DEPTH, json_depth

PATH = "/talkdesk"
END_CLOSE_CODE = 4000
# The conversationId is not a handle lexdesk issued (docs/protocol.md §2, v1.1: a code in the 4400s).
REFUSED_CLOSE_CODE = 4401


def server_frame(frame: dict[str, Any]) -> dict[str, Any] | None:
    """Our frame in the Lex Web UI's words, or None for what it has no words for (bot turns are
    shown by the Lex Web UI itself, lifecycle events other than the end are not in its dialect)."""
    if frame.get("type") == "message" and frame.get("from") == "agent":
        return {"event_type": "message_created", "content": frame.get("text", ""),
                "author_name": frame.get("author") or "Agent"}
    if frame.get("type") == "event" and frame.get("event") == "conversation_ended":
        return {"event_type": "conversation_ended"}
    return None


def customer_text(raw: str | bytes) -> str | None:
    """The customer's text from an `onMessage` action, or None for anything else."""
    if isinstance(raw, bytes) or json_depth(raw) > MAX_JSON_DEPTH:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("action") != "onMessage":
        return None
    message = data.get("message")
    if not isinstance(message, str) or not message.strip() or "\x00" in message:
        return None
    return message
