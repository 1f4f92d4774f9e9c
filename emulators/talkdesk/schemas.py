"""Request bodies of the Digital Connect API, validated into Talkdesk 422 errors with `fields`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from .errors import invalid_body


class ContactPerson(BaseModel):
    model_config = ConfigDict(extra="allow")

    email: str | None = None

    @field_validator("email")
    @classmethod
    def _looks_like_email(cls, value: str | None) -> str | None:
        if value and ("@" not in value or value.startswith("@") or value.endswith("@")):
            raise ValueError("must be an email address")
        return value


class PreviousMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["EXTERNAL", "USER"]
    content: str
    created_at: datetime


class CreateConversation(BaseModel):
    model_config = ConfigDict(extra="allow")

    touchpoint_id: str = Field(min_length=1, max_length=255)
    subject: str = Field(min_length=1)
    contact_person: ContactPerson | None = None
    context_parameters: dict[str, str | None] = Field(default_factory=dict)
    previous_messages: list[PreviousMessage] = Field(default_factory=list)


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    content: str = Field(min_length=1)
    attachments: list[dict[str, Any]] = Field(default_factory=list)


class CustomerTyping(BaseModel):
    model_config = ConfigDict(extra="allow")

    # Strict: a lax bool would take "yes", "off" or 0, and a caller sending those has a bug worth a 422.
    active: StrictBool


Model = TypeVar("Model", bound=BaseModel)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 422 Talkdesk error."""
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid_body([{"name": "body", "description": f"Invalid JSON: {exc}"}]) from None
    if not isinstance(data, dict):
        raise invalid_body([{"name": "body", "description": "The body must be a JSON object."}])
    return data


def validate(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"name": ".".join(str(part) for part in error["loc"]) or "body", "description": error["msg"]}
            for error in exc.errors()
        ]
        raise invalid_body(fields) from None
