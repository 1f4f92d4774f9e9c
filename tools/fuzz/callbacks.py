"""Fuzzing Talkdesk's callback routes (docs/protocol.md §3) with Hypothesis-generated requests.

Each request is a route, a target conversation (a bystander's Talkdesk id, an unknown one, a
sacrificial conversation of the fuzzer's, an arbitrary path segment), an `X-Api-Key` (right, wrong,
missing, altered), a Content-Type and a body (valid, damaged, arbitrary JSON, not JSON, oversized,
streamed, deeply nested, not UTF-8).

A request that the callback app would accept (the right key and a body its own schemas accept,
services/callback/schemas.py) is never aimed at a bystander: it goes to a sacrificial conversation
instead, since a valid `close` or agent message to a bystander would change it by design. So every
request a bystander gets must be refused, and the bystanders' transcripts must not change.

The property, per request: a status among 202, 401, 404, 409, 413, 422 (never 5xx), the one
docs/protocol.md §3 gives for this request, and a JSON body of the documented shape."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st

from services.callback.schemas import AgentJoined, AgentMessage, Close, Webhook
from shared.protocol import MAX_JSON_DEPTH, json_depth
from tools.fuzz import values as v
from tools.fuzz.known import body_bug, parsed_as_json, url_bug, webhook_bug
from tools.fuzz.report import PhaseStats, Violations

MAX_BODY = 64 * 1024  # services/callback/app.py MAX_BODY_BYTES
ALLOWED = frozenset({202, 401, 404, 409, 413, 422})  # docs/protocol.md §3
ROUTES = ("agent-joined", "messages", "close", "webhook")
TARGETS = ("bystander", "bystander", "bystander", "unknown", "sacrificial", "arbitrary")
# Mostly the right key: a wrong one stops a request at the door (401), before the code worth fuzzing.
KEYS = ("valid",) * 24 + ("missing", "wrong", "empty", "suffix", "prefix", "upper", "null", "unicode", "long",
                          "duplicate_valid_first", "duplicate_wrong_first")
CONTENT_TYPES = ("application/json",) * 6 + (None, "text/plain",
                 "application/json; charset=utf-8", "application/vnd.talkdesk+json", "APPLICATION/JSON",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1", "application/jsonx", "json")  # JSON first: most common
BODY_SIZES = (MAX_BODY - 1, MAX_BODY, MAX_BODY + 1, MAX_BODY + 2, 70_000, 100_000)
CONTENT_LENGTHS = (31_999, 32_000, 32_001)  # AgentMessage.content max_length
EVENTS = ("conversation_started", "message_created", "conversation_ended")


class TargetId:
    """Where the target conversation's Talkdesk id goes in a webhook body (filled in when sent)."""

    def __repr__(self) -> str:
        return "<target id>"


TARGET_ID = TargetId()


@dataclass(frozen=True)
class CallbackInput:
    category: str
    route: str
    target: str
    key: str
    content_type: str | None
    value: Any = None  # a JSON-able body (may hold TARGET_ID and values.Raw) ...
    data: bytes | None = None  # ... or the body's bytes as is
    missing_body: bool = False
    chunked: bool = False  # stream it without Content-Length
    arbitrary_id: str = ""


# -- generation --------------------------------------------------------------------------------------------

NICE_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1,
                    max_size=60)


@cache  # built once: Hypothesis is slow to take in new strategy objects
def _valid_body(route: str) -> st.SearchStrategy[Any]:
    """A body the route's schema accepts (mostly: the text may still hold something it refuses)."""
    joined = st.fixed_dictionaries({}, optional={"agent_name": NICE_TEXT})
    message = st.fixed_dictionaries(
        {"id": st.one_of(st.uuids().map(str), NICE_TEXT.map(lambda t: t[:128])), "content": NICE_TEXT},
        optional={"author_name": NICE_TEXT, "created_at": st.sampled_from(("2026-11-22T10:00:00Z", "yesterday"))})
    close = st.fixed_dictionaries({}, optional={"reason": NICE_TEXT})
    if route == "agent-joined":
        return st.one_of(joined, st.none())
    if route == "messages":
        return message
    if route == "close":
        return st.one_of(close, st.none())
    return st.one_of(
        st.fixed_dictionaries({"event": st.just("conversation_started"), "conversation_id": st.just(TARGET_ID),
                               "payload": joined}),
        st.fixed_dictionaries({"event": st.just("message_created"), "conversation_id": st.just(TARGET_ID),
                               "payload": message}),
        st.fixed_dictionaries({"event": st.just("conversation_ended"), "conversation_id": st.just(TARGET_ID)},
                              optional={"payload": close}))


@st.composite
def _mutated_body(draw: st.DrawFn, route: str, max_depth: int) -> Any:
    """A valid body with one field (or one of its payload's) missing, of the wrong type, too long or odd."""
    body = draw(_valid_body(route))
    if not isinstance(body, dict):
        body = {}
    holder = body
    fields = {"id", "content", "agent_name", "reason", "author_name", "created_at"}
    if route == "webhook":
        # Hypothesis favours the first of sampled values: the payload, where most of the fields are.
        if draw(st.sampled_from(("payload", "envelope"))) == "payload":
            holder = body.setdefault("payload", {})
        else:
            fields = {"event", "conversation_id", "payload"}
    name = draw(st.sampled_from(sorted({*holder, *fields})))
    how = draw(st.sampled_from(("wrong", "long", "string", "remove")))
    if how == "remove":
        holder.pop(name, None)
    elif how == "wrong":
        holder[name] = draw(v.wrong_values(max_depth))
    elif how == "string":
        holder[name] = draw(v.strings())
    else:
        holder[name] = draw(v.long_text())
    if route == "webhook" and draw(st.sampled_from((False, False, False, True))):
        body["event"] = draw(st.one_of(st.sampled_from(("message_deleted", "", "MESSAGE_CREATED")), v.strings(10)))
    return body


@st.composite
def _sized_body(draw: st.DrawFn, route: str) -> Any:
    """A valid agent message whose content makes the body (or just the content) a size around a limit."""
    del route  # the message shape carries the size for every route
    body: dict[str, Any] = {"id": f"sized-{draw(st.uuids()).hex[:12]}", "content": ""}
    if draw(st.booleans()):
        body["content"] = "c" * draw(st.sampled_from(CONTENT_LENGTHS))
    else:
        pad = draw(st.sampled_from(("c", "é", "\U0001f600")))
        need = max(0, draw(st.sampled_from(BODY_SIZES)) - len(json.dumps(body, ensure_ascii=False).encode()))
        body["content"] = pad * (need // len(pad.encode())) + "c" * (need % len(pad.encode()))
    return body


RAW_BODIES = (b"", b"not json", b"{", b"null", b"[]", b'"text"', b"0", b"{}", b'{"id": "x", "content": "y"',
              b"\xff", b"\xfe\xff\x00{", b'{"id": "x", "content": "\xff"}', "{}".encode("utf-16"),
              b'{"id": "x", "content": "y"}\x00', b"\x00" * 16)


def callback_inputs(max_depth: int) -> st.SearchStrategy[CallbackInput]:
    """The mix: valid bodies, damaged ones, arbitrary JSON, raw bytes, sizes around the limits, deep
    nesting; each on any route, target, key and Content-Type."""

    def build(category: str, body: Callable[[str], st.SearchStrategy[Any]] | None = None,
              data: st.SearchStrategy[bytes] | None = None) -> st.SearchStrategy[CallbackInput]:
        return st.sampled_from(ROUTES).flatmap(lambda route: st.builds(
            CallbackInput, st.just(category), st.just(route), st.sampled_from(TARGETS), st.sampled_from(KEYS),
            st.sampled_from(CONTENT_TYPES),
            value=body(route) if body is not None else st.none(),
            data=data if data is not None else st.none(),
            missing_body=st.booleans() if category == "valid" else st.just(False),
            chunked=st.booleans() if category == "sized" else st.just(False),
            # Cut to 1000: httpx refuses URLs over 64 KiB, and percent-encoding multiplies the length.
            arbitrary_id=st.one_of(v.strings(20).map(lambda s: s[:1000]), st.sampled_from(
                ("", ".", "..", "%2F", "a/b", "?x=1", "#", "\u202e", "x" * 300)))))

    def mutated(route: str) -> st.SearchStrategy[Any]:
        return _mutated_body(route, max_depth)

    return st.one_of(
        build("valid", _valid_body),
        build("valid", _valid_body),
        build("mutated", mutated),
        build("mutated", mutated),
        build("json", lambda _: v.json_values()),
        build("raw", data=st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64))),
        build("sized", _sized_body),
        build("deep", lambda _: v.raw_tokens(max_depth)),
    )


# -- what the protocol says the answer is -------------------------------------------------------------------


def _parse_like_fastapi(body: bytes | None, content_type: str | None) -> tuple[str, Any]:
    """What FastAPI makes of a body: ("missing", None), ("json", value), ("bytes", body: JSON only
    when the Content-Type says so) or ("invalid", None) when JSON that cannot be parsed."""
    if not body:
        return "missing", None
    if json_depth(body) > MAX_JSON_DEPTH:
        return "invalid", None  # refused before parsing, whatever the Content-Type (shared/protocol.py)
    if parsed_as_json(content_type):
        try:
            return "json", json.loads(body)
        except (ValueError, RecursionError):
            return "invalid", None
    return "bytes", body


def _valid(model: type[Any], value: Any) -> bool:
    try:
        model.model_validate(value)
    except ValueError:  # pydantic's ValidationError
        return False
    return True


def schema_accepts(route: str, body: bytes | None, content_type: str | None) -> bool:
    """Whether the route's schemas accept this body (the question a valid key leaves)."""
    kind, value = _parse_like_fastapi(body, content_type)
    if kind in ("invalid", "bytes"):
        return False
    if route in ("agent-joined", "close"):
        return value is None or (isinstance(value, dict) and _valid(AgentJoined if route == "agent-joined" else Close,
                                                                    value))
    if route == "messages":
        return isinstance(value, dict) and _valid(AgentMessage, value)
    if not isinstance(value, dict) or not _valid(Webhook, value):
        return False
    payload = value.get("payload", {})
    model = {"conversation_started": AgentJoined, "message_created": AgentMessage,
             "conversation_ended": Close}[value["event"]]
    return _valid(model, payload)


def key_kind_is_valid(key: str) -> bool | None:
    """True for the right key, None when the server could read it either way, False when wrong."""
    if key == "valid":
        return True
    if key.startswith("duplicate"):
        return None
    return False


# -- the run ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    bystanders: list[str]  # Talkdesk ids of the bystanders: only refused requests go there
    open_id: str  # sacrificial: agent messages and joins (never closed by the fuzzer)
    closable_id: str  # sacrificial: closes (and whatever follows them: 409)


class CallbackFuzzer:
    def __init__(self, http_url: str, api_key: str, targets: Targets, backend: str, stats: PhaseStats,
                 violations: Violations, skip_known_bugs: bool) -> None:
        self.http_url, self.api_key, self.targets, self.backend = http_url, api_key, targets, backend
        self.stats, self.violations = stats, violations
        self.skip_known_bugs = skip_known_bugs
        self.client = httpx.Client(base_url=http_url, timeout=10)
        self.closed_ids: set[str] = set()  # sacrificial conversations a 202 close has ended: 409 from then on
        self._unknown = 0

    def close(self) -> None:
        self.client.close()

    def _key_headers(self, key: str) -> list[tuple[str, bytes]]:
        right = self.api_key.encode()
        values = {
            "valid": [right], "missing": [], "wrong": [b"0123456789abcdef0123456789abcdef"], "empty": [b""],
            "suffix": [right + b"x"], "prefix": [right[:-1]], "upper": [right.upper() if right.upper() != right
                                                                           else right.lower()],
            "null": [b"null"], "unicode": ["clé-\u00e9\u202e".encode()], "long": [b"k" * 4000],
            "duplicate_valid_first": [right, b"wrong"], "duplicate_wrong_first": [b"wrong", right],
        }[key]
        return [("X-Api-Key", value) for value in values]

    def _target_id(self, item: CallbackInput, target: str) -> str:
        if target == "bystander":
            return self.targets.bystanders[zlib.crc32(item.arbitrary_id.encode("utf-8", "replace"))
                                           % len(self.targets.bystanders)]
        if target == "unknown":
            self._unknown += 1
            return f"td-unknown-{self._unknown}"
        if target == "arbitrary":
            return item.arbitrary_id
        closes = item.route == "close" or (item.route == "webhook" and isinstance(item.value, dict)
                                           and item.value.get("event") == "conversation_ended")
        return self.targets.closable_id if closes else self.targets.open_id

    def _webhook_target(self, body: bytes | None, content_type: str | None) -> tuple[str, str]:
        """A webhook names its conversation in the body, and a damaged body may name another one than
        the target it was drawn for: judge the answer by the one it names."""
        kind, value = _parse_like_fastapi(body, content_type)
        named = value.get("conversation_id") if kind == "json" and isinstance(value, dict) else None
        if not isinstance(named, str):
            return "unknown", ""
        if named in self.targets.bystanders:
            return "bystander", named
        if named in (self.targets.open_id, self.targets.closable_id):
            return "sacrificial", named
        return "unknown", named

    def _body(self, item: CallbackInput, target_id: str) -> bytes | None:
        if item.missing_body:
            return None
        if item.data is not None:
            return item.data
        return v.dumps(_fill(item.value, target_id), ascii_only=False).encode("utf-8", "surrogatepass")

    def run_one(self, item: CallbackInput) -> None:
        key_ok = key_kind_is_valid(item.key)
        target = item.target
        target_id = self._target_id(item, target)
        body = self._body(item, target_id)
        oversized = body is not None and len(body) > MAX_BODY
        fits = schema_accepts(item.route, body, item.content_type) and not oversized
        if target == "bystander" and fits and key_ok is not False:
            # It may be accepted: aim it at a sacrificial conversation instead of changing a bystander.
            target = "sacrificial"
            target_id = self._target_id(item, target)
            body = self._body(item, target_id)
            fits = schema_accepts(item.route, body, item.content_type)
        if item.route == "webhook":
            target, target_id = self._webhook_target(body, item.content_type)
        bug = body_bug(body, item.content_type)
        if bug is None and item.route != "webhook":
            bug = url_bug(self.backend, target_id)
        if bug is None and key_ok is not False and item.route == "webhook" and body and not oversized:
            kind, value = _parse_like_fastapi(body, item.content_type)
            bug = webhook_bug(value) if kind == "json" else None
        if bug and self.skip_known_bugs:
            self.stats.skipped_known += 1
            return
        # Lone surrogates cannot be UTF-8: percent-encode their surrogatepass bytes, as a sloppy client would.
        segment = quote(target_id.encode("utf-8", "surrogatepass"), safe="")
        path = "/talkdesk/webhook" if item.route == "webhook" else f"/talkdesk/conversations/{segment}/{item.route}"
        headers: list[tuple[str, bytes]] = self._key_headers(item.key)
        if item.content_type is not None:
            headers.append(("Content-Type", item.content_type.encode()))
        content: bytes | Iterator[bytes] | None = body
        if item.chunked and body is not None:
            content = _chunks(body)
        try:
            response = self.client.post(path, content=content, headers=headers)
        except (httpx.LocalProtocolError, httpx.InvalidURL):
            self.stats.unsendable += 1  # e.g. a header value or a URL httpx refuses to send
            return
        except httpx.TransportError as exc:
            self.stats.inputs += 1
            self.violations.add("callbacks", f"connection failed: {type(exc).__name__}", str(exc),
                                _show(item, path, body), known=bug)
            self.client.close()
            self.client = httpx.Client(base_url=self.http_url, timeout=10)
            return
        self.stats.inputs += 1
        self.stats.categories[item.category] += 1
        self.stats.outcomes[str(response.status_code)] += 1
        expected = self._expected(item, target, target_id, key_ok, oversized, fits)
        self._check(item, target, path, body, response, expected, bug)
        if response.status_code == 202 and target == "sacrificial" and _closes(item, body):
            self.closed_ids.add(target_id)

    def _expected(self, item: CallbackInput, target: str, target_id: str, key_ok: bool | None, oversized: bool,
                  fits: bool) -> frozenset[int]:
        """The statuses docs/protocol.md §3 allows for this request."""
        if key_ok is False:
            return frozenset({401})  # the key is checked first: before the size, the route and the body
        maybe_401 = {401} if key_ok is None else set()  # either way round, the key comes first
        unroutable = item.route != "webhook" and target == "arbitrary" and not _routable(item.arbitrary_id)
        if oversized and not item.chunked:
            return frozenset({413} | maybe_401)  # a declared Content-Length over the limit: before routing
        if unroutable:
            return frozenset({404} | maybe_401)
        if oversized:
            return frozenset({413} | maybe_401)  # a streamed body is refused as it is read, after routing
        statuses = {422} if not fits else set()
        if fits and target == "sacrificial":
            # The open one is never closed; the closable one answers 202 until a close ends it, then 409.
            statuses |= {409} if target_id in self.closed_ids else {202}
        elif fits:
            statuses |= {404}
        if key_ok is None:
            statuses |= {401}
        if target == "arbitrary":
            statuses |= {404}
        return frozenset(statuses)

    def _check(self, item: CallbackInput, target: str, path: str, body: bytes | None, response: httpx.Response,
               expected: frozenset[int], bug: str | None) -> None:
        shown = _show(item, path, body)

        def violation(kind: str, detail: str) -> None:
            self.violations.add("callbacks", kind, detail, shown, known=bug)

        status = response.status_code
        if status >= 500:
            violation(f"{status} (server error)", response.text[:300])
        elif status not in ALLOWED:
            violation(f"{status}: not a status of docs/protocol.md §3", response.text[:300])
        elif status not in expected:
            violation(f"{status} where docs/protocol.md §3 says {'|'.join(map(str, sorted(expected)))}",
                      f"target {target}, key {item.key}, content-type {item.content_type!r}: {response.text[:300]}")
        if target == "bystander" and status == 202:
            violation("a bystander accepted a request its schemas refuse", response.text[:300])
        if status >= 500:
            return  # reported above; its body is whatever the server could still say
        try:
            answer = response.json()
        except ValueError:
            violation("answer is not JSON", f"{status} {response.headers.get('content-type')}: {response.text[:200]}")
            return
        if status == 202 and answer != {"status": "accepted"}:
            violation("202 without {'status': 'accepted'}", json.dumps(answer)[:300])
        if status != 202 and not (isinstance(answer, dict) and isinstance(answer.get("error"), str)
                                  and isinstance(answer.get("message"), str)):
            violation("error answer without 'error' and 'message'", json.dumps(answer)[:300])


def _fill(value: Any, target_id: str) -> Any:
    if value is TARGET_ID:
        return target_id
    if isinstance(value, dict):
        return {k: _fill(item, target_id) for k, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, target_id) for item in value]
    return value


def _closes(item: CallbackInput, body: bytes | None) -> bool:
    if item.route == "close":
        return True
    try:
        return item.route == "webhook" and json.loads(body or b"").get("event") == "conversation_ended"
    except (ValueError, AttributeError, RecursionError):
        return False


def _routable(segment: str) -> bool:
    """Whether /talkdesk/conversations/<segment>/<route> still names the route once the URL is
    normalised and decoded: not empty, not a dot segment, no slash (sent as %2F, which the server
    decodes before routing)."""
    return segment not in ("", ".", "..") and "/" not in segment


def _chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 8192):
        yield body[start:start + 8192]


def _show(item: CallbackInput, path: str, body: bytes | None, limit: int = 300) -> str:
    shown = repr(body) if body is not None else "(no body)"
    if len(shown) > limit:
        shown = f"{shown[:limit]}... ({len(body or b'')} bytes)"
    extras = " chunked" if item.chunked else ""
    return f"POST {path} key={item.key} content-type={item.content_type!r}{extras} body={shown}"

