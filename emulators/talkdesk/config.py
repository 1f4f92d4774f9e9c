"""Settings of the Talkdesk emulator: credentials, the emulated agent, and fault injection knobs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EmulatorConfig(BaseModel):
    """Everything the emulator can be told at start-up. The fault knobs can also change at run time."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = "lexdesk-emulator-client"
    client_secret: str = "lexdesk-emulator-secret"
    touchpoint_id: str = "emulator-touchpoint"

    callback_url: str | None = None
    """Base URL of lexdesk's callback receiver, e.g. "http://127.0.0.1:8080"; None: the agent stays silent."""
    callback_api_key: str | None = None
    """Sent as `X-Api-Key` on every callback."""

    agent_name: str = "Alex"
    agent_join_delay: float = Field(default=1.0, ge=0)
    agent_reply_delay: float = Field(default=0.3, ge=0)
    scripted_agent: bool = True
    """Join after `agent_join_delay`, greet, echo every customer message and close on "close". False: nobody
    joins until a person takes the conversation at /console, who then joins under their own name."""

    token_ttl: float = Field(default=3600.0, gt=0)

    customer_typing_ttl: float = Field(default=8.0, gt=0)
    """Seconds a customer's "typing: true" lasts without a refresh. lexdesk refreshes it at most every ~4 s
    while the customer keeps typing, so twice that survives one late refresh, and a lost "false" (or a
    customer who just left) clears by itself."""

    latency: float = Field(default=0.0, ge=0)
    """Seconds added to every Talkdesk API call."""
    error_rate: float = Field(default=0.0, ge=0, le=1)
    """Fraction of API calls answered 500 or 503 with no effect."""
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    """Fraction of API calls answered 429 with a `Retry-After` header and no effect."""
    retry_after: int = Field(default=1, ge=0)
    stall_rate: float = Field(default=0.0, ge=0, le=1)
    """Fraction of API calls that hang `stall_seconds`, then answer 504 with no effect."""
    stall_seconds: float = Field(default=2.0, ge=0)

    state_file: str | None = None
    """SQLite file the records are written through to, so a restart keeps open conversations, idempotent
    answers and tokens; None: memory only, nothing is written to disk."""

    seed: int | None = None
    """Seed of the random generator that picks faults; None: not reproducible."""
