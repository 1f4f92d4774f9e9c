"""The transcript a customer downloads (GET /transcript/{id}): what was said, by whom and when, as
stored (card data redacted), in plain text. Events appear as a line each; internal rows do not."""

from __future__ import annotations

from collections.abc import Sequence

from shared.models import Conversation, Message, MessageStatus, as_utc

EVENTS = {
    "handoff_requested": "Connecting to an agent",
    "agent_joined": "An agent joined",
    "handoff_failed": "No agent could be reached",
    "interrupted": "The assistant stopped: you wrote first",
    "conversation_ended": "The chat ended",
}
WHO = {"customer": "You", "bot": "Assistant", "system": "lexdesk"}


def transcript_text(conversation: Conversation, messages: Sequence[Message]) -> str:
    lines = [f"Chat {conversation.id}, started {as_utc(conversation.created_at):%Y-%m-%d %H:%M} UTC", ""]
    for message in messages:
        if message.status == MessageStatus.HELD or (message.status == MessageStatus.SKIPPED
                                                    and message.sender == "bot"):
            continue  # never shown to the customer
        at = f"{as_utc(message.created_at):%H:%M:%S}"
        if message.kind == "event":
            if message.event in EVENTS and message.destination == "customer":
                author = message.payload.get("author")
                lines.append(f"{at}  -- {EVENTS[message.event]}{f': {author}' if author else ''} --")
            continue
        if not message.body:
            continue
        who = (message.payload.get("author") or "Agent") if message.sender == "agent" else WHO[message.sender]
        lines.append(f"{at}  {who}: {message.body}")
    if conversation.rating is not None:
        lines += ["", f"Your rating: {conversation.rating}/5" + (f" ({conversation.rating_comment})"
                                                               if conversation.rating_comment else "")]
    return "\n".join(lines) + "\n"
