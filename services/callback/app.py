"""The HTTP app: Talkdesk's callbacks (docs/protocol.md §3), the operator API (§6) and the chat page.

Callbacks are validated, stored as rows (shared/inbound.py) and only then answered 202; delivery to
the customer happens in the routing workers, published after commit. Handlers are plain
functions, which Starlette runs in its thread pool, because the database and broker calls block."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.callback.codehook import add_code_hook_route
from services.callback.http_server import uvicorn_options
from services.callback.schemas import Accepted, AgentJoined, AgentMessage, Close, ReplayRequest, Typing, Webhook
from services.callback.transcript import transcript_text
from shared import dead_letters, inbound, transcript_links
from shared.celery_app import get_celery_app
from shared.db import read_scope, session_scope
from shared.message_status import delays
from shared.metrics import DatabaseCollector, HttpMetrics
from shared.models import Conversation, Destination, utcnow
from shared.periodic import last_run
from shared.protocol import MAX_JSON_DEPTH, json_depth
from shared.readiness import check_database_writable, describe
from shared.settings import Settings
from shared.store import customer_frame, handoff_in_flight, transcript

MAX_BODY_BYTES = 64 * 1024
MAX_BIGINT = 2**63 - 1  # what PostgreSQL's bigint holds
CHAT_PAGE = Path(__file__).parent / "static" / "chat.html"
# Every operator route is one of these or under /api/; every Talkdesk route is under /talkdesk/ (and the
# Lex code hook takes the same key). The credential for a path is checked by its prefix, before anything
# else (see _count).
OPERATOR_PATHS = frozenset({"/readyz", "/metrics"})
KEY_PATHS = frozenset({"/lex/code-hook"})  # outside /talkdesk/, with Talkdesk's key all the same


class ApiError(HTTPException):
    def __init__(self, status: int, error: str, message: str, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(status, detail={"error": error, "message": message}, headers=headers)


def create_app(settings: Settings) -> FastAPI:
    # The resume-token secret signs the conversation handles the Lex code hook hands out.
    settings.require("callback_api_key", "admin_token", "resume_token_secret")
    assert settings.callback_api_key is not None and settings.admin_token is not None
    api_key = settings.callback_api_key.get_secret_value().encode()
    admin_token = settings.admin_token.get_secret_value().encode()
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(settings.database_url))
    metrics = HttpMetrics(registry)
    # No public /docs, /redoc or /openapi.json: the schema is served to operators at /api/openapi.json.
    app = FastAPI(title="lexdesk callback and operator API", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.uvicorn_options = uvicorn_options(settings)  # how `lexdesk callback` serves it
    # Streamed bodies over the limit are refused (413) as they arrive, inside the routes, so the answer
    # goes through our error handler; a declared Content-Length over it is refused in _count.
    app.router.max_body_size = MAX_BODY_BYTES

    # -- errors in one JSON shape: {"error", "message", ...} ------------------------------------------

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            detail: Any = too_large
        elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body it cannot parse at all (not UTF-8, nested too deep, a number
            # too long): to Talkdesk that is a malformed body like any other, 422 naming the body.
            return JSONResponse({"error": "invalid_body", "message": "body: could not be parsed as JSON",
                                 "fields": [{"name": "body", "description": "could not be parsed as JSON"}]},
                                status_code=422)
        elif isinstance(exc.detail, dict):
            detail = exc.detail
        else:
            detail = {"error": "http_error", "message": str(exc.detail)}
        return JSONResponse(detail, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            # A JSON syntax error's location is a character offset, not a field: name the body.
            {"name": "body" if error["type"] == "json_invalid"
             else ".".join(str(p) for p in error["loc"] if p != "body") or "body",
             "description": error["msg"]}
            for error in exc.errors()
        ]
        message = "; ".join(f"{f['name']}: {f['description']}" for f in fields)
        return JSONResponse(jsonable_encoder({"error": "invalid_body", "message": message, "fields": fields}),
                            status_code=422)

    too_large = {"error": "too_large", "message": f"request body exceeds {MAX_BODY_BYTES} bytes"}

    def routed(request: Request) -> bool:
        # A path no route serves is a 404 whatever its body: the body is judged only where it is read.
        return any(route.matches(request.scope)[0] == Match.FULL for route in app.router.routes)

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        declared = request.headers.get("content-length", "")
        refused = unauthenticated(request)
        if refused is not None:
            # The credential first (docs/protocol.md §3: before the body is parsed), before the size and
            # the route too: a caller without it learns nothing about what its request would have got.
            response: Response = refused
        elif declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            # Refused before reading (a streamed body over the limit is refused by max_body_size).
            response = JSONResponse(too_large, status_code=413)
        elif (declared.isdigit() and int(declared) > 0 and routed(request)
              and json_depth(await request.body()) > MAX_JSON_DEPTH):
            # Malformed before it is parsed (shared/protocol.py MAX_JSON_DEPTH). The body read here, at most
            # 64 KiB, is what the route then reads.
            message = f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels"
            response = JSONResponse({"error": "invalid_body", "message": message,
                                     "fields": [{"name": "body", "description": message[6:]}]}, status_code=422)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response

    # -- auth -------------------------------------------------------------------------------------------

    def refuse_nul(**params: str | None) -> None:
        for name, value in params.items():
            if value is not None and "\x00" in value:
                raise ApiError(422, "invalid_filter", f"{name}: must not contain the NUL character")

    def key_ok(x_api_key: str | None) -> bool:
        return x_api_key is not None and hmac.compare_digest(x_api_key.encode(), api_key)

    def bearer_ok(authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), admin_token)

    wrong_key = "missing or wrong X-Api-Key"
    wrong_token = "missing or wrong bearer token (LEXDESK_ADMIN_TOKEN)"

    def unauthenticated(request: Request) -> JSONResponse | None:
        """The 401 for a request to a Talkdesk or operator path without its credential, else None."""
        path = request.scope["path"]
        if (path.startswith("/talkdesk/") or path in KEY_PATHS) and not key_ok(request.headers.get("x-api-key")):
            message = wrong_key
        elif ((path in OPERATOR_PATHS or path.startswith("/api/"))
              and not bearer_ok(request.headers.get("authorization"))):
            message = wrong_token
        else:
            return None
        return JSONResponse({"error": "unauthorized", "message": message}, status_code=401)

    # The same checks as dependencies too: they put the headers in the API schema, and hold for a route
    # even if it ever moved out from under the prefixes above.
    def talkdesk_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if not key_ok(x_api_key):
            raise ApiError(401, "unauthorized", wrong_key)

    def operator(authorization: Annotated[str | None, Header()] = None) -> None:
        if not bearer_ok(authorization):
            raise ApiError(401, "unauthorized", wrong_token)

    TalkdeskAuth = Depends(talkdesk_key)
    OperatorAuth = Depends(operator)

    def store(talkdesk_id: str, operation: Callable[..., inbound.Outcome], *args: Any) -> Accepted:
        """Store Talkdesk's event as a row before answering (shared/inbound.py): 404 for a Talkdesk
        conversation we do not know, 409 for one that has ended, 503 if the database is unreachable
        (Talkdesk retries)."""
        if "\x00" in talkdesk_id:  # PostgreSQL text cannot hold it: no conversation can have that id
            raise ApiError(404, "unknown_conversation", "no conversation with that Talkdesk id")
        try:
            outcome = operation(settings, talkdesk_id, *args)  # looked up and stored in one transaction
            # Talkdesk can call back before the worker that started the conversation has stored its
            # id: while a handoff is in flight an unknown id is "retry", not "never".
            if outcome == inbound.Outcome.UNKNOWN:
                with read_scope(settings.database_url) as session:
                    if handoff_in_flight(session):
                        raise ApiError(503, "unknown_conversation_yet", f"no conversation with Talkdesk id "
                                       f"{talkdesk_id!r} yet; a handoff is in progress, retry", retry_after=1)
        except SQLAlchemyError as exc:
            raise ApiError(503, "unavailable", f"could not store the event ({type(exc).__name__}); retry") from exc
        if outcome == inbound.Outcome.UNKNOWN:
            raise ApiError(404, "unknown_conversation", f"no conversation with Talkdesk id {talkdesk_id!r}")
        if outcome == inbound.Outcome.CLOSED:
            raise ApiError(409, "conversation_closed", f"conversation {talkdesk_id!r} has ended")
        return Accepted()

    # -- Talkdesk callbacks --------------------------------------------------------------------------

    @app.post("/talkdesk/conversations/{conversation_id}/agent-joined", status_code=202, dependencies=[TalkdeskAuth])
    def agent_joined(conversation_id: str, body: Annotated[AgentJoined | None, Body()] = None) -> Accepted:
        return store(conversation_id, inbound.agent_joined, body.agent_name if body else None)

    @app.post("/talkdesk/conversations/{conversation_id}/messages", status_code=202, dependencies=[TalkdeskAuth])
    def agent_message(conversation_id: str, body: AgentMessage) -> Accepted:
        return store(conversation_id, inbound.agent_message, body.id, body.content, body.author_name,
                     body.created_at)

    @app.post("/talkdesk/conversations/{conversation_id}/close", status_code=202, dependencies=[TalkdeskAuth])
    def agent_close(conversation_id: str, body: Annotated[Close | None, Body()] = None) -> Accepted:
        return store(conversation_id, inbound.agent_closed)

    @app.post("/talkdesk/conversations/{conversation_id}/typing", status_code=202, dependencies=[TalkdeskAuth])
    def agent_typing(conversation_id: str, body: Typing) -> Accepted:
        return store(conversation_id, inbound.agent_typing, body.active)

    @app.post("/talkdesk/webhook", status_code=202, dependencies=[TalkdeskAuth])
    def webhook(body: Webhook) -> Accepted:
        model = {"conversation_started": AgentJoined, "message_created": AgentMessage,
                 "conversation_ended": Close}[body.event]
        try:
            payload = model.model_validate(body.payload)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("payload", *e["loc"])} for e in exc.errors()]) from exc
        if isinstance(payload, AgentJoined):
            return agent_joined(body.conversation_id, payload)
        if isinstance(payload, AgentMessage):
            return agent_message(body.conversation_id, payload)
        return agent_close(body.conversation_id, payload)

    # -- operators ---------------------------------------------------------------------------------------

    add_code_hook_route(app, settings, api_key)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", dependencies=[OperatorAuth])
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            # A write, within LEXDESK_READINESS_TIMEOUT: SELECT 1 succeeds on a full disk or a locked file.
            check_database_writable(settings.database_url, settings.readiness_timeout)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {describe(exc)}"
        try:
            options = get_celery_app().conf.broker_transport_options or {}
            with Connection(settings.broker_url, transport_options=options, connect_timeout=3) as connection:
                connection.ensure_connection(max_retries=1)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
        # Read from the database: while it is not ready that read could only wait (on SQLite, for the
        # 30 s busy timeout) to say the same.
        checks["sweep"] = sweep_check() if checks["database"] == "ok" else "unknown: the database is not ready"
        ready = all(v == "ok" for v in checks.values())
        # A vendor failing is named, not "not ready": lexdesk keeps accepting and retrying (up to
        # LEXDESK_RETRY_FOR), and taking this process out of service would only add an outage of ours.
        destinations = destination_checks() if checks["database"] == "ok" else {}
        degraded = any(v != "ok" for v in destinations.values())
        status = "not_ready" if not ready else "degraded" if degraded else "ready"
        return JSONResponse({"status": status, "checks": {**checks, **destinations}},
                            status_code=200 if ready else 503)

    def destination_checks() -> dict[str, str]:
        """Lex and Talkdesk: ok, or how many messages have been failing towards it for longer than
        LEXDESK_DELAYED_AFTER (shared/message_status.py)."""
        try:
            with read_scope(settings.database_url) as session:
                delayed = delays(session)
        except Exception as exc:
            return {"lex": f"unknown: {type(exc).__name__}", "talkdesk": f"unknown: {type(exc).__name__}"}
        now = utcnow()
        return {destination: delayed[destination].describe(now) if destination in delayed else "ok"
                for destination in (Destination.LEX.value, Destination.TALKDESK.value)}

    def sweep_check() -> str:
        """Recovery runs only while some timers worker runs the sweep (shared/periodic.py): three
        intervals without one means messages a crash stranded stay stranded, so say it."""
        try:
            ran_at, holder = last_run(settings.database_url, "sweep")
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        allowed = 3 * settings.sweep_interval
        if ran_at is None:
            return (f"error: no sweep has run yet; is a worker consuming the timers queue running? "
                    f"(expected one every {settings.sweep_interval:g}s)")
        age = (utcnow() - ran_at).total_seconds()
        if age > allowed:
            return (f"error: no sweep for {age:.0f}s (last by {holder}); is a worker consuming the timers "
                    f"queue running? (expected one every {settings.sweep_interval:g}s)")
        return "ok"

    @app.get("/api/openapi.json", dependencies=[OperatorAuth], include_in_schema=False)
    def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/metrics", dependencies=[OperatorAuth])
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/conversations", dependencies=[OperatorAuth])
    def list_conversations(state: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                           offset: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0) -> dict[str, Any]:
        refuse_nul(state=state)
        with session_scope(settings.database_url) as session:
            query = select(Conversation).order_by(Conversation.created_at.desc()).limit(limit).offset(offset)
            if state:
                query = query.where(Conversation.state == state)
            return {"conversations": [_conversation_json(c) for c in session.scalars(query)]}

    @app.get("/api/conversations/{conversation_id}", dependencies=[OperatorAuth])
    def get_conversation(conversation_id: str) -> dict[str, Any]:
        if "\x00" in conversation_id:
            raise ApiError(404, "unknown_conversation", "no conversation with that id")
        with session_scope(settings.database_url) as session:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                raise ApiError(404, "unknown_conversation", f"no conversation {conversation_id!r}")
            messages = transcript(session, conversation_id)
            return {**_conversation_json(conversation), "transcript": [_message_json(m) for m in messages]}

    def dead_letter_filter(ids: list[int] | None, conversation_id: str | None, error_class: str | None,
                           since: str | None, until: str | None) -> dead_letters.DeadLetterFilter:
        refuse_nul(conversation_id=conversation_id, error_class=error_class, since=since, until=until)
        try:
            return dead_letters.DeadLetterFilter(
                ids=ids, conversation_id=conversation_id, error_class=error_class,
                since=dead_letters.parse_time(since, "since"), until=dead_letters.parse_time(until, "until"))
        except ValueError as exc:
            raise ApiError(422, "invalid_filter", str(exc)) from exc

    @app.get("/api/dead-letters", dependencies=[OperatorAuth])
    def list_dead_letters(conversation_id: str | None = None, error_class: str | None = None,
                          since: str | None = None, until: str | None = None,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                          offset: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0) -> dict[str, Any]:
        flt = dead_letter_filter(None, conversation_id, error_class, since, until)
        with session_scope(settings.database_url) as session:
            return dead_letters.list_dead_letters(session, flt, limit=limit, offset=offset)

    @app.post("/api/dead-letters/replay", dependencies=[OperatorAuth])
    def replay_dead_letters(body: ReplayRequest) -> dict[str, Any]:
        """Replay by ids, conversation, time range or error class (at least one filter, or all when
        none is given); `dry_run` only counts."""
        flt = dead_letter_filter(body.ids, body.conversation_id, body.error_class, body.since, body.until)
        with session_scope(settings.database_url) as session:
            ids = dead_letters.matching_ids(session, flt)
        summary = dead_letters.ReplaySummary(matched=len(ids))
        if not body.dry_run:
            for message_id in ids:
                summary.add(message_id, dead_letters.replay_one(settings, message_id))
        return {**summary.as_json(), "dry_run": body.dry_run}

    # -- the chat page -------------------------------------------------------------------------------------

    @app.get("/transcript/{conversation_id}", include_in_schema=False)
    def transcript_download(conversation_id: str, expires: str | None = None, sig: str | None = None) -> Response:
        """The customer's transcript link (shared/transcript_links.py): the stored, redacted transcript
        of that one conversation, as text, until the link expires."""
        assert settings.resume_token_secret is not None
        problem = transcript_links.verify(settings.resume_token_secret.get_secret_value(), conversation_id,
                                          expires, sig)
        if problem is not None:
            raise ApiError(403, "invalid_link", problem)
        with read_scope(settings.database_url) as session:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:  # purged since (retention)
                raise ApiError(404, "unknown_conversation", "this conversation is no longer kept")
            text = transcript_text(conversation, transcript(session, conversation_id))
        return PlainTextResponse(text, headers={
            "Content-Disposition": f'attachment; filename="chat-{conversation_id[:8]}.txt"',
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def chat_page() -> HTMLResponse:
        return HTMLResponse(CHAT_PAGE.read_text().replace("{{EDGE_URL}}", settings.chat_edge_url))

    return app


def _conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id, "state": c.state, "customer": {"name": c.customer_name, "email": c.customer_email},
        "talkdesk_conversation_id": c.talkdesk_conversation_id, "agent_name": c.agent_name,
        "last_sentiment": c.last_sentiment, "last_seq": c.last_frame_seq, "acked_seq": c.acked_frame_seq,
        "closed_by": c.closed_by, "created_at": c.created_at.isoformat(),
        "closed_at": c.closed_at.isoformat() if c.closed_at else None,
        "rating": ({"score": c.rating, "comment": c.rating_comment, "rated_at": c.rated_at.isoformat()
                    if c.rated_at else None} if c.rating is not None else None),
    }


def _message_json(m: Any) -> dict[str, Any]:
    return {
        "seq": m.seq, "frame_seq": m.frame_seq, "sender": m.sender, "kind": m.kind, "event": m.event,
        "text": m.body, "destination": m.destination, "status": m.status, "attempts": m.attempts,
        "error_class": m.error_class, "last_error": m.last_error, "intent": m.intent,
        "intent_state": m.intent_state, "dialog_action": m.dialog_action, "sentiment": m.sentiment,
        "replayed": m.replayed, "created_at": m.created_at.isoformat(),
        "frame": customer_frame(m) if m.frame_seq is not None else None,
    }
