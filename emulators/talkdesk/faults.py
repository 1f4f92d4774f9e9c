"""Fault injection for the Talkdesk API routes: latency, 500/503, 429 with Retry-After, and stalls."""

from __future__ import annotations

import asyncio
import random

from pydantic import BaseModel, ConfigDict, Field

from .config import EmulatorConfig
from .errors import (
    GATEWAY_TIMEOUT,
    INTERNAL_ERROR,
    SERVICE_UNAVAILABLE,
    TOO_MANY_REQUESTS,
    TalkdeskError,
)
from .state import Stats


class FaultSettings(BaseModel):
    """The knobs in force; PUT /_emulator/faults changes them while the emulator runs."""

    model_config = ConfigDict(validate_assignment=True)

    latency: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    retry_after: int = Field(default=1, ge=0)
    stall_rate: float = Field(default=0.0, ge=0, le=1)
    stall_seconds: float = Field(default=2.0, ge=0)

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> FaultSettings:
        return cls.model_validate(config.model_dump(include=set(cls.model_fields)))


class FaultUpdate(BaseModel):
    """A partial change of the knobs: only the fields given are changed."""

    model_config = ConfigDict(extra="forbid")

    latency: float | None = Field(default=None, ge=0)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    rate_limit_rate: float | None = Field(default=None, ge=0, le=1)
    retry_after: int | None = Field(default=None, ge=0)
    stall_rate: float | None = Field(default=None, ge=0, le=1)
    stall_seconds: float | None = Field(default=None, ge=0)


class FaultInjector:
    """Decides, per API call and before it has any effect, whether the call fails."""

    def __init__(self, settings: FaultSettings, rng: random.Random, stats: Stats) -> None:
        self.settings = settings
        self._rng = rng
        self._stats = stats

    def update(self, change: FaultUpdate) -> FaultSettings:
        merged = {**self.settings.model_dump(), **change.model_dump(exclude_none=True)}
        self.settings = FaultSettings.model_validate(merged)
        return self.settings

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def apply(self) -> None:
        """Sleep the latency, then maybe raise a fault. Callers do this before touching any state."""
        knobs = self.settings
        if knobs.latency > 0:
            await asyncio.sleep(knobs.latency)
        if self._roll(knobs.error_rate):
            status = self._rng.choice((500, 503))
            self._stats.faults[f"error_{status}"] += 1
            if status == 500:
                raise TalkdeskError(500, INTERNAL_ERROR, "Internal server error", "Injected fault.")
            raise TalkdeskError(503, SERVICE_UNAVAILABLE, "Service unavailable", "Injected fault.")
        if self._roll(knobs.rate_limit_rate):
            self._stats.faults["rate_limit"] += 1
            raise TalkdeskError(
                429,
                TOO_MANY_REQUESTS,
                "Too many requests",
                "Injected rate limit.",
                headers={"Retry-After": str(knobs.retry_after)},
            )
        if self._roll(knobs.stall_rate):
            self._stats.faults["stall"] += 1
            await asyncio.sleep(knobs.stall_seconds)
            raise TalkdeskError(504, GATEWAY_TIMEOUT, "Gateway timeout", "Injected stall.")
