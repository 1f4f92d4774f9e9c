"""Bodies Talkdesk sends us (docs/protocol.md §3). Unknown fields are ignored; missing required ones are a
422 naming the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.protocol import no_nul


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    _no_nul_characters = field_validator("*", mode="before")(no_nul)


class AgentJoined(Body):
    agent_name: str | None = Field(None, max_length=200)


class AgentMessage(Body):
    id: str = Field(min_length=1, max_length=128, description="Talkdesk message id; deduplicates retries")
    content: str = Field(min_length=1, max_length=32_000)
    author_name: str | None = Field(None, max_length=200)
    created_at: str | None = Field(None, max_length=64)


class Typing(Body):
    active: bool


class Close(Body):
    reason: str | None = Field(None, max_length=500)


class Webhook(Body):
    event: Literal["conversation_started", "message_created", "conversation_ended"]
    conversation_id: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"


class ReplayRequest(Body):
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(None, max_length=10_000)
    conversation_id: str | None = None
    since: str | None = None
    until: str | None = None
    error_class: str | None = None
    dry_run: bool = False
