"""Talkdesk-shaped errors: `{"code", "message", "description", "fields"}` and the codes the emulator uses.

Only CONVERSATION_ENDED (3016011) is a code known from the real API; the others are the emulator's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

CONVERSATION_ENDED = "3016011"
INVALID_BODY = "3016001"
TOUCHPOINT_NOT_FOUND = "3016004"
CONVERSATION_NOT_FOUND = "3016005"
CONVERSATION_CLOSING = "3016012"
AGENT_NOT_JOINED = "3016013"
UNAUTHORIZED = "1001401"
TOO_MANY_REQUESTS = "1001429"
INTERNAL_ERROR = "1001500"
SERVICE_UNAVAILABLE = "1001503"
GATEWAY_TIMEOUT = "1001504"


class TalkdeskError(Exception):
    """An error answered with Talkdesk's error body."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        description: str = "",
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.description = description
        self.fields = fields or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "description": self.description,
            "fields": self.fields,
        }


def conversation_not_found(conversation_id: str) -> TalkdeskError:
    return TalkdeskError(
        404, CONVERSATION_NOT_FOUND, "Conversation not found", f"No conversation with id {conversation_id}."
    )


def conversation_ended(conversation_id: str) -> TalkdeskError:
    return TalkdeskError(
        400,
        CONVERSATION_ENDED,
        "Conversation has already ended",
        f"The conversation {conversation_id} has already ended.",
    )


def invalid_body(fields: list[dict[str, str]]) -> TalkdeskError:
    return TalkdeskError(422, INVALID_BODY, "Invalid request body", "The request body is not valid.", fields)


async def talkdesk_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TalkdeskError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
