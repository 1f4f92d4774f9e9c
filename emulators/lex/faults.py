"""Outage injection for the Lex emulator's runtime routes: added latency, 500/503 and 429 answers.

It exists so lexdesk's retry path (a TransientError, retried by Celery) can be exercised against a
Lex that misbehaves the way AWS does. An injected failure is decided and raised *before* the route
touches the session store, so a failed call has no effect: once the faults are off, the same session
carries on where it was. The knobs change at run time through ``GET``/``PUT /_emulator/faults``.
"""

from __future__ import annotations

import asyncio
import json
import random

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulators.lex.errors import InternalFailureException, ServiceUnavailableException, ThrottlingException


class FaultSettings(BaseModel):
    """The knobs in force. Rates are fractions of runtime calls; ``latency`` is seconds per call."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0, le=1)
    throttle_rate: float = Field(default=0.0, ge=0, le=1)
    latency: float = Field(default=0.0, ge=0, le=60)


class FaultUpdate(BaseModel):
    """A partial change of the knobs (``PUT`` body): only the fields given change; unknown ones are refused."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float | None = Field(default=None, ge=0, le=1)
    throttle_rate: float | None = Field(default=None, ge=0, le=1)
    latency: float | None = Field(default=None, ge=0, le=60)


class FaultInjector:
    """Decides, per runtime call and before it has any effect, whether the call fails."""

    def __init__(self, settings: FaultSettings | None = None, rng: random.Random | None = None) -> None:
        self.settings = settings or FaultSettings()
        self._rng = rng or random.Random()

    def update(self, change: FaultUpdate) -> FaultSettings:
        merged = {**self.settings.model_dump(), **change.model_dump(exclude_none=True)}
        self.settings = FaultSettings.model_validate(merged)
        return self.settings

    def _roll(self, rate: float) -> bool:
        return rate > 0 and (rate >= 1 or self._rng.random() < rate)

    async def apply(self) -> None:
        """Sleep the latency, then maybe raise an AWS-shaped 500/503 or 429."""
        knobs = self.settings
        if knobs.latency > 0:
            await asyncio.sleep(knobs.latency)
        if self._roll(knobs.error_rate):
            if self._rng.random() < 0.5:
                raise InternalFailureException("We encountered an internal error. Please try again. (injected)")
            raise ServiceUnavailableException("Service is unavailable. Please try again later. (injected)")
        if self._roll(knobs.throttle_rate):
            raise ThrottlingException("Rate exceeded (injected)")


def fault_routes(injector: FaultInjector) -> APIRouter:
    """``GET``/``PUT /_emulator/faults``: emulator-only, unauthenticated, not part of the Lex API.

    The body is validated here rather than by FastAPI because the app answers request-validation
    errors in the AWS shape (400 ``ValidationException``); this control route answers 422 like any
    FastAPI app, so a typo in a chaos script is plainly a client mistake about the emulator itself.
    """
    router = APIRouter()

    @router.get("/_emulator/faults")
    async def get_faults() -> JSONResponse:
        return JSONResponse(injector.settings.model_dump())

    @router.put("/_emulator/faults")
    async def put_faults(request: Request) -> JSONResponse:
        try:
            change = FaultUpdate.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return JSONResponse({"detail": json.loads(exc.json())}, status_code=422)
        return JSONResponse(injector.update(change).model_dump())

    return router
