"""HTTP layer of the Amazon Lex V2 emulator: the runtime API here, the read-only models API from
:mod:`emulators.lex.models_api` and the outage knobs from :mod:`emulators.lex.faults`.

It speaks the lexv2-runtime rest-json wire protocol (paths, status codes, ``x-amzn-ErrorType`` errors,
PutSession's gzip+base64 ``x-amz-lex-*`` response headers) so an unmodified boto3 client works against
it::

    boto3.client("lexv2-runtime", endpoint_url="http://127.0.0.1:8002", region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test")

Requests are not authenticated (SigV4 headers are ignored). All dialog logic lives in
:mod:`emulators.lex.engine`; this module validates, routes, stores sessions and serialises.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulators.lex.botdef import BotDef, load_bots_dirs
from emulators.lex.engine import LexEngine
from emulators.lex.errors import LexServiceError, ResourceNotFoundException, ValidationException
from emulators.lex.faults import FaultInjector, FaultSettings, fault_routes
from emulators.lex.models_api import models_routes
from emulators.lex.store import SessionKey, SessionStore

DEFAULT_BOTS_DIR = Path(__file__).resolve().parent / "bots"
SESSION_ID_RE = re.compile(r"^[0-9a-zA-Z._:-]{2,100}$")
SESSION_PATH = "/bots/{bot_id}/botAliases/{bot_alias_id}/botLocales/{locale_id}/sessions/{session_id}"


def encode_header_value(value: Any) -> str:
    """How Lex V2 packs JSON into response headers: base64(gzip(json))."""
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def decode_header_value(value: str) -> Any:
    """Inverse of :func:`encode_header_value` (what a client does with PutSession's headers)."""
    return json.loads(gzip.decompress(base64.b64decode(value)).decode("utf-8"))


def _error_response(error_type: str, status_code: int, message: str, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"message": message},
        status_code=status_code,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": request_id},
    )


def _request_id(request: Request) -> str:
    request_id = getattr(request.state, "request_id", None)
    return request_id if isinstance(request_id, str) else str(uuid.uuid4())


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationException(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationException("Request body must be a JSON object")
    return body


def _request_attributes(body: dict[str, Any]) -> dict[str, str] | None:
    raw = body.get("requestAttributes")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in raw.items()):
        raise ValidationException("requestAttributes must be a map of strings")
    return dict(raw)


def create_app(
    bots_dir: Path | Sequence[Path] | None = None,
    *,
    today: Callable[[], date] | None = None,
    faults: FaultSettings | None = None,
    seed: int | None = None,
) -> FastAPI:
    """The emulator as an ASGI app, serving the bots defined in ``bots_dir`` (default: ``bots/``), or in
    several directories (a bot id defined twice is an error), e.g. the real bots and a test's own.

    ``today`` fixes the date relative dates ("next month") resolve against; defaults to the real date.
    ``faults`` are the outage knobs at start-up (see :mod:`emulators.lex.faults`); ``seed`` makes the
    choice of which calls fail reproducible.
    """
    directories = [Path(bots_dir)] if isinstance(bots_dir, str | Path) else [Path(d) for d in bots_dir or []]
    bots: dict[str, BotDef] = load_bots_dirs(directories or [DEFAULT_BOTS_DIR])
    engines = {bot_id: LexEngine(bot, today) for bot_id, bot in bots.items()}
    store = SessionStore()
    injector = FaultInjector(faults, random.Random(seed))

    app = FastAPI(
        title="Amazon Lex V2 runtime emulator",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.lex_bots = bots
    app.state.lex_store = store
    app.state.lex_faults = injector
    app.include_router(fault_routes(injector))
    app.include_router(models_routes(bots))

    @app.middleware("http")
    async def add_request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.request_id = str(uuid.uuid4())
        response = await call_next(request)
        response.headers.setdefault("x-amzn-RequestId", request.state.request_id)
        return response

    @app.exception_handler(LexServiceError)
    async def lex_error(request: Request, exc: LexServiceError) -> JSONResponse:
        return _error_response(exc.error_type, exc.status_code, exc.message, _request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = "UnknownOperationException" if exc.status_code in (404, 405) else "ValidationException"
        return _error_response(error_type, exc.status_code, str(exc.detail), _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response("ValidationException", 400, str(exc.errors()), _request_id(request))

    def resolve(bot_id: str, alias_id: str, locale_id: str, session_id: str) -> tuple[LexEngine, SessionKey]:
        if not SESSION_ID_RE.match(session_id):
            raise ValidationException(
                "1 validation error detected: Value at 'sessionId' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: [0-9a-zA-Z._:-]+ (length 2-100)"
            )
        engine = engines.get(bot_id)
        if engine is None:
            raise ResourceNotFoundException(f"Could not find bot: {bot_id}")
        if alias_id not in engine.bot.alias_ids:
            raise ResourceNotFoundException(f"Could not find bot alias {alias_id} for bot {bot_id}")
        if locale_id not in engine.bot.locale_ids:
            raise ResourceNotFoundException(f"Locale {locale_id} is not enabled for bot alias {alias_id}")
        return engine, (bot_id, alias_id, locale_id, session_id)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(SESSION_PATH + "/text")
    async def recognize_text(
        bot_id: str, bot_alias_id: str, locale_id: str, session_id: str, request: Request
    ) -> JSONResponse:
        await injector.apply()
        engine, key = resolve(bot_id, bot_alias_id, locale_id, session_id)
        body = await _json_body(request)
        attributes = _request_attributes(body)
        with store.transaction():
            conversation = engine.recognize_text(
                store.get(key),
                session_id,
                body.get("text"),
                request_state=body.get("sessionState"),
                request_id=_request_id(request),
            )
            store.put(key, conversation, engine.bot.idle_session_ttl_seconds)
        return JSONResponse(conversation.recognize_text_response(attributes))

    @app.get(SESSION_PATH)
    async def get_session(bot_id: str, bot_alias_id: str, locale_id: str, session_id: str) -> JSONResponse:
        await injector.apply()
        _, key = resolve(bot_id, bot_alias_id, locale_id, session_id)
        conversation = store.get(key)
        if conversation is None:
            raise ResourceNotFoundException(f"Session {session_id} not found")
        return JSONResponse(conversation.get_session_response())

    @app.post(SESSION_PATH)
    async def put_session(
        bot_id: str, bot_alias_id: str, locale_id: str, session_id: str, request: Request
    ) -> Response:
        await injector.apply()
        engine, key = resolve(bot_id, bot_alias_id, locale_id, session_id)
        body = await _json_body(request)
        attributes = _request_attributes(body)
        conversation = engine.put_session(
            session_id,
            body.get("sessionState"),
            body.get("messages"),
            request_id=_request_id(request),
        )
        with store.transaction():
            store.put(key, conversation, engine.bot.idle_session_ttl_seconds)
        headers = {
            "x-amz-lex-session-id": session_id,
            "x-amz-lex-session-state": encode_header_value(conversation.state.to_wire()),
        }
        if conversation.messages:
            headers["x-amz-lex-messages"] = encode_header_value(conversation.messages)
        if attributes:
            headers["x-amz-lex-request-attributes"] = encode_header_value(attributes)
        content_type = request.headers.get("ResponseContentType") or "text/plain; charset=utf-8"
        return Response(content=b"", media_type=content_type, headers=headers)

    @app.delete(SESSION_PATH)
    async def delete_session(bot_id: str, bot_alias_id: str, locale_id: str, session_id: str) -> JSONResponse:
        await injector.apply()
        _, key = resolve(bot_id, bot_alias_id, locale_id, session_id)
        store.delete(key)
        return JSONResponse(
            {"botId": bot_id, "botAliasId": bot_alias_id, "localeId": locale_id, "sessionId": session_id}
        )

    return app


def run(
    host: str = "127.0.0.1",
    port: int = 8002,
    bots_dir: Path | Sequence[Path] | None = None,
    faults: FaultSettings | None = None,
    seed: int | None = None,
) -> None:
    """Serve the emulator with uvicorn until interrupted (blocking)."""
    app = create_app(bots_dir, faults=faults, seed=seed)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
