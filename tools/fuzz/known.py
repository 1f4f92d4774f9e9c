"""Product bugs the fuzzer found, with the inputs that triggered them: all seven are fixed, and the
committed test (tests/integration/test_fuzz.py) sends these inputs like any other, as regressions.

`--skip-known-bugs` leaves them out, for the day a new bug is listed here before it is fixed: list it,
keep the suite green with the flag while the fix is under way, then drop the flag again."""

from __future__ import annotations

import email.message
import json
import math
from dataclasses import dataclass
from typing import Any

from shared.protocol import json_depth


@dataclass(frozen=True)
class KnownBug:
    key: str
    title: str
    where: str
    fix: str


KNOWN_BUGS = {bug.key: bug for bug in (
    KnownBug("edge-deep-json",
             "a text frame of JSON nested ~1000 deep (e.g. '[' * 2000) kills the socket with close 1011",
             "services/edge/server.py EdgeServer._on_frame: json.loads raises RecursionError, which is not a "
             "ValueError, escapes _handle, and websockets closes the connection with 1011",
             "catch RecursionError next to ValueError around json.loads (answer bad_frame), or reject frames "
             "nested deeper than a small limit before parsing"),
    KnownBug("edge-nonfinite-attributes",
             "hello with NaN/Infinity/1e999 in `attributes` is answered `unavailable` on PostgreSQL "
             "(the client is told to resend a frame that can never be stored)",
             "shared/protocol.py Hello.attributes (dict[str, Any]) lets non-finite floats through; "
             "the json column refuses the NaN token (DataError) and EdgeServer._store answers `unavailable`",
             "refuse non-finite numbers as bad_frame: json.loads(raw, parse_constant=reject) in _on_frame, or "
             "a validator on attributes that runs json.dumps(value, allow_nan=False)"),
    KnownBug("callback-400-unparseable-body",
             "a JSON body that is not UTF-8/16/32 (e.g. b'\\xff'), nested ~1000 deep, or holds an integer of more "
             "than 4300 digits gets 400 {'error': 'http_error', 'message': 'There was an error parsing the body'} "
             "instead of 422 (callback routes and operator API alike)",
             "FastAPI's request handler turns any failure to parse the body other than json.JSONDecodeError "
             "(UnicodeDecodeError, ValueError 'Exceeds the limit (4300 digits)', RecursionError) into "
             "HTTPException(400); services/callback/app.py has no handler that maps it to the documented 422",
             "in _http_error map status 400 from body parsing to the 422 invalid_body shape naming `body`, or parse "
             "the body in a middleware/dependency that catches UnicodeDecodeError and RecursionError"),
    KnownBug("webhook-payload-500",
             "POST /talkdesk/webhook with a valid key, event conversation_started or conversation_ended and a "
             "payload its model refuses (e.g. {'agent_name': 5}, {'reason': 'x' * 501}, {'reason': '\\u0000'}) "
             "answers 500 instead of 422",
             "services/callback/app.py webhook(): AgentJoined.model_validate(body.payload) and "
             "Close.model_validate(body.payload) raise pydantic.ValidationError, which nothing handles "
             "(only message_created converts it to RequestValidationError)",
             "validate the payload of every event the way message_created does: catch ValidationError and raise "
             "RequestValidationError with loc ('payload', ...)"),
    KnownBug("ack-beyond-sent-loses-frames",
             "an `ack` (or a `resume` last_seq) above the frames the socket was actually sent marks frames that "
             "are still pending as delivered, so they are never sent: e.g. hello, {'type': 'ack', 'seq': 5}, "
             "{'type': 'end'} -> the `conversation_ended` event is never written and the socket never closed; "
             "hello, a message, disconnect before the bot answers, resume with last_seq 1000 -> the bot's answer "
             "is marked delivered and lost",
             "workers/routing.py customer_ack clamps seq to conversation.last_frame_seq (and customer_resumed "
             "clamps last_seq the same way) when the task runs, i.e. to frames that exist, not frames that were "
             "sent; services/edge/server.py _ack forwards any seq above the last one",
             "clamp to the highest frame_seq already SENT or DELIVERED to the customer (not last_frame_seq) in both "
             "tasks; and in the edge clamp an ack to the highest seq written to that socket"),
    KnownBug("postgres-nul-in-url",
             "on PostgreSQL a NUL (%00) in a URL's conversation id or query answers 5xx: "
             "POST /talkdesk/conversations/a%00b/messages (right key, valid body) -> 503 'could not store the event "
             "(DataError); retry' (Talkdesk retries it forever); GET /api/conversations/a%00b, "
             "/api/conversations?state=%00, /api/dead-letters?conversation_id=%00 or ?error_class=%00 -> 500",
             "services/callback/app.py store() and the operator routes pass path and query strings to SQL unchecked; "
             "psycopg refuses NUL in text parameters (DataError), which store() reports as 503 and the operator "
             "routes do not catch at all. Bodies are safe: schemas.py refuses NUL there (no_nul)",
             "refuse NUL in path and query strings up front: a Talkdesk id with NUL is an unknown conversation "
             "(404), an operator filter with NUL a 422 (or a dependency that rejects '\\x00' in any path/query "
             "parameter)"),
    KnownBug("operator-int64-overflow",
             "operator API: GET /api/conversations?offset=9223372036854775808 (or /api/dead-letters) and "
             "POST /api/dead-letters/replay {'ids': [9223372036854775808]} answer 500",
             "services/callback/app.py list_conversations/list_dead_letters (offset: Query(ge=0) without le) and "
             "ReplayRequest.ids (list[int]) pass integers beyond 64 bits to SQL: OverflowError on SQLite, "
             "DataError 'bigint out of range' on PostgreSQL",
             "bound them: offset Query(ge=0, le=2**63 - 1) and ids list[Annotated[int, Field(ge=0, le=2**63 - 1)]]"),
)}

# JSON nested this deep or deeper is treated as the deep-JSON bug: the limit that breaks is Python's
# recursion limit (1000) minus the parser's caller's stack depth, a little under 1000. (Measured with
# the product's own scanner, shared/protocol.py json_depth.)
DEEP = 900
INT64_MAX = 2**63 - 1


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


def ack_ahead(payload: str | bytes, shown: int) -> bool:
    """Whether this frame is a valid `ack` above the highest seq the socket has been shown."""
    from shared.protocol import Ack

    if isinstance(payload, bytes) or '"ack"' not in payload or json_depth(payload) >= DEEP:
        return False
    try:
        data = json.loads(payload)
        return Ack.model_validate(data).seq > shown
    except (ValueError, RecursionError):  # not JSON, or not an ack (pydantic's ValidationError)
        return False


def frame_bug(payload: str | bytes, backend: str) -> str | None:
    """The known bug this WebSocket frame would trigger, if any."""
    if isinstance(payload, bytes) or len(payload.encode("utf-8", "surrogatepass")) > 16 * 1024:
        return None  # binary and too_large frames are refused before parsing
    if json_depth(payload) >= DEEP:
        return "edge-deep-json"
    if backend == "postgres" and '"hello"' in payload:
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):
            return None
        if isinstance(data, dict) and data.get("type") == "hello" and _non_finite(data.get("attributes")):
            return "edge-nonfinite-attributes"
    return None


def parsed_as_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body with this Content-Type as JSON (application/json or */*+json; with
    no Content-Type it does not: the body stays bytes and fails validation)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def body_bug(body: bytes | None, content_type: str | None) -> str | None:
    """The known bug this callback or operator request body would trigger, if any: FastAPI answers
    422 only for json.JSONDecodeError; any other failure to parse the body is a 400."""
    if not body or not parsed_as_json(content_type):
        return None
    try:
        json.loads(body)  # what Starlette's request.json() does
    except json.JSONDecodeError:
        return None
    except (ValueError, RecursionError):  # UnicodeDecodeError, too many digits, too deep
        return "callback-400-unparseable-body"
    return None


def webhook_bug(value: Any) -> str | None:
    """The webhook's unhandled payload validation (for a request with the right key)."""
    from services.callback.schemas import AgentJoined, Close, Webhook

    try:
        webhook = Webhook.model_validate(value)
    except ValueError:  # pydantic.ValidationError is a ValueError: a 422, as documented
        return None
    model = {"conversation_started": AgentJoined, "conversation_ended": Close}.get(webhook.event)
    if model is None:
        return None
    try:
        model.model_validate(webhook.payload)
    except ValueError:
        return "webhook-payload-500"
    return None


def url_bug(backend: str, *strings: Any) -> str | None:
    """The NUL-in-URL bug: any path or query string holding U+0000, on PostgreSQL."""
    if backend == "postgres" and any(isinstance(text, str) and "\x00" in text for text in strings):
        return "postgres-nul-in-url"
    return None


def operator_bug(query: dict[str, Any] | None, body: Any) -> str | None:
    """The operator-API overflow: an offset or a replay id beyond 64 bits."""
    offset = (query or {}).get("offset")
    try:
        if offset is not None and abs(int(str(offset))) > INT64_MAX:
            return "operator-int64-overflow"
    except ValueError:
        pass
    ids = body.get("ids") if isinstance(body, dict) else None
    if isinstance(ids, list) and any(isinstance(i, int) and not isinstance(i, bool) and abs(i) > INT64_MAX
                                     for i in ids):
        return "operator-int64-overflow"
    return None
