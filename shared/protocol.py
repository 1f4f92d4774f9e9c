"""The customer WebSocket protocol's client frames (docs/protocol.md §2), as pydantic models.

Unknown fields are ignored (extra="ignore"), so newer clients keep working; a frame that does not fit
its model is a `bad_frame` naming the field."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


def no_nul(value: Any) -> Any:
    # PostgreSQL text cannot hold U+0000: refuse it here, as bad input, rather than fail to store it.
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


class Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")

    _no_nul_characters = field_validator("*", mode="before")(no_nul)


class Customer(Frame):
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)


class Hello(Frame):
    type: Literal["hello"]
    customer: Customer | None = None
    locale: str | None = Field(None, max_length=32)
    attributes: dict[str, Any] | None = None
    # Extension: send this socket `echo` frames, the customer's messages written in the conversation's
    # other tabs (and, on resume, the customer's messages since last_seq).
    echo: bool = False

    @field_validator("attributes")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Stored as JSON: NaN and Infinity are not JSON (PostgreSQL's json type refuses them).
        if value is not None:
            try:
                json.dumps(value, allow_nan=False)
            except ValueError as exc:
                raise ValueError("must not contain NaN or Infinity") from exc
        return value


class Resume(Frame):
    type: Literal["resume"]
    resume_token: str = Field(min_length=1, max_length=512)
    last_seq: int = Field(0, ge=0)
    echo: bool = False  # as in Hello


class CustomerMessage(Frame):
    type: Literal["message"]
    id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Blank is empty: Lex refuses it (text must have a length of at least 1 after trimming), and an
        # agent has nothing to read.
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class Typing(Frame):
    type: Literal["typing"]
    active: bool = True


class Ack(Frame):
    type: Literal["ack"]
    seq: int = Field(ge=0)


class End(Frame):
    type: Literal["end"]


class Ping(Frame):
    type: Literal["ping"]


class Rating(Frame):
    """Extension: the customer's rating of a chat the agent ended (asked for by `conversation_ended`
    with `rating_requested`)."""

    type: Literal["rating"]
    score: int = Field(ge=1, le=5)
    comment: str | None = Field(None, max_length=2000)


# JSON nested deeper than this is refused as malformed, by the edge (bad_frame) and the callback app
# (422), before it is parsed: Python's parser and every recursive walk over a value (redaction,
# validation, the JSON column) would otherwise meet the interpreter's recursion limit at some depth
# that depends on the stack, and fail there as something else. No client of ours nests beyond a few.
MAX_JSON_DEPTH = 32


def json_depth(text: str | bytes) -> int:
    """How deep brackets nest outside JSON strings: a linear scan, no parsing (the text need not even
    be valid JSON)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot be too deep: most frames are small, skip the scan
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


CLIENT_FRAMES: dict[str, type[Frame]] = {
    "hello": Hello, "resume": Resume, "message": CustomerMessage, "typing": Typing, "ack": Ack, "end": End,
    "ping": Ping, "rating": Rating,
}

# The last one is ours, beyond docs/protocol.md §2: the broker did not confirm a message; the client resends it
# (same id, so at most one copy counts).
ERROR_CODES = ("bad_frame", "too_large", "rate_limited", "unknown_type", "invalid_token", "conversation_closed",
               "not_started", "unavailable",
               # Extension: a newer socket of the conversation replaced this one (close code 4409).
               "superseded")


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "frame"
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)


def error_frame(code: str, message: str, frame_id: str | None = None) -> dict[str, Any]:
    assert code in ERROR_CODES, code
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        frame["id"] = frame_id
    return frame
