"""`POST /lex/code-hook` (docs/protocol.md §3): the Lex V2 fulfillment code hook over HTTP, for a Lambda
shim or a Lex-facing proxy; `services/lambda_codehook.py` serves the same logic as an AWS Lambda
handler. The key is checked before the body is read, so a caller without it learns nothing, not even
whether its body would have parsed."""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from shared.codehook import CodeHookEvent, answer
from shared.settings import Settings

MAX_EVENT_BYTES = 64 * 1024


def add_code_hook_route(app: FastAPI, settings: Settings, api_key: bytes) -> None:
    @app.post("/lex/code-hook", tags=["lex"])
    async def lex_code_hook(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        """A Lex V2 code hook input event in; a Lex V2 code hook response out. For the escalation intent
        the live chat is started and `sessionAttributes.talkdesk_conversation_id` carries the handle the
        Lex Web UI passes as `conversationId` on the edge's `/talkdesk`; other intents get `Delegate`."""
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), api_key):
            raise HTTPException(401, detail={"error": "unauthorized", "message": "missing or wrong X-Api-Key"})
        raw = await request.body()
        if len(raw) > MAX_EVENT_BYTES:
            raise HTTPException(413, detail={"error": "too_large",
                                             "message": f"request body exceeds {MAX_EVENT_BYTES} bytes"})
        try:
            event = CodeHookEvent.model_validate(json.loads(raw))
        except (ValueError, RecursionError) as exc:
            return _invalid(exc)
        try:
            response: dict[str, Any] = await run_in_threadpool(answer, settings, event)
        except SQLAlchemyError as exc:
            raise HTTPException(503, detail={"error": "unavailable", "message": f"database: {type(exc).__name__}"},
                                headers={"Retry-After": "1"}) from exc
        return JSONResponse(response)


def _invalid(exc: Exception) -> JSONResponse:
    if isinstance(exc, ValidationError):
        fields = [{"name": ".".join(str(p) for p in error["loc"]) or "body", "description": error["msg"]}
                  for error in exc.errors()]
    else:
        fields = [{"name": "body", "description": "could not be parsed as JSON"}]
    message = "; ".join(f"{f['name']}: {f['description']}" for f in fields)
    return JSONResponse({"error": "invalid_body", "message": message, "fields": fields}, status_code=422)
