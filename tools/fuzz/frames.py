"""Fuzzing the customer WebSocket (docs/protocol.md §2) with Hypothesis-generated frames.

Each generated frame goes to one of three sockets: a fresh one (no hello yet), a started one (its
conversation talks to the bot) or one attached to an ended conversation. After the frame the fuzzer
sends a sentinel (an unknown type with a unique id): the edge handles a socket's frames in order, so
everything the server says between the frame and the sentinel's `unknown_type` error is the frame's
answer, and frames the workers push meanwhile (`message`, `event`) are told apart by their `seq`.

The property, per frame: exactly the answer docs/protocol.md §2 gives for it (worked out here from the
protocol's own frame models, shared/protocol.py), or none for `ack`, `typing` and `end`; the socket
stays open unless the frame is over the hard limit (close 1009) or is not UTF-8 (1007, the WebSocket
RFC's rule); never 1011; never `unavailable` (the database is up: that answer means the input broke
the write); an answer within 10 s."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hypothesis import strategies as st
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from services.edge import tokens
from shared.inbound import LEX_MAX_TEXT
from shared.protocol import CLIENT_FRAMES, ERROR_CODES, MAX_JSON_DEPTH, json_depth
from tools.fuzz import values as v
from tools.fuzz.known import ack_ahead, frame_bug
from tools.fuzz.report import PhaseStats, Violations

MAX_FRAME = 16 * 1024  # docs/protocol.md §2
HARD_LIMIT = 4 * MAX_FRAME  # services/edge/server.py HARD_LIMIT_FACTOR: beyond it the edge closes with 1009
ANSWER_TIMEOUT = 10.0
END_TIMEOUT = 20.0  # `end` goes through the database, a worker and the broker before the socket closes
SENTINEL_TYPE = "lexdesk-fuzz-sentinel"
STATES = ("bot", "handoff_requested", "agent_queued", "agent_active", "closed", "handoff_failed")
# Texts the bot and the emulated agent react to, so that generated conversations go places: Lex
# intents, the escalation, a card number (redacted and sealed), the agent's `close`.
BOT_TEXTS = ("what is my balance", "Checking", "Savings", "I want to talk to an agent", "agent", "close", "help",
             "my card is 4111 1111 1111 1111", "4111111111111111", "yes", "no", "cancel")
ODD_TYPES = ("", " ", "HELLO", "Message", "message ", "pong", "welcome", "accepted", "error", "event", "hello\x00",
             "ping\u200b", "typing\ud800", "__proto__", "constructor", "ack\n", SENTINEL_TYPE)
TARGETS = ("fresh", "started", "started", "ended")
ROTATE_AFTER_ACCEPTED = 15  # the rate limit is 20 messages per 10 s per socket: rotate before it bites hard


# -- inputs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """A resume token chosen when the frame is sent: `own` (valid, a fuzz conversation), `ended` (valid,
    an ended one), `bystander` (a bystander's token altered by `mutation`), `foreign` (signed with
    another secret), `forged` (a bystander's id with a made-up signature)."""

    kind: str
    mutation: int = 0


@dataclass(frozen=True)
class FrameInput:
    category: str
    target: str
    value: Any = None  # a JSON-able value (may hold Token and values.Raw), rendered when sent
    text: str | None = None  # or the text as is
    data: bytes | None = None  # or bytes: a binary frame, or (invalid_utf8) a text frame of these bytes
    ascii_only: bool = True

    def render(self, resolve: Any) -> str | bytes:
        if self.data is not None:
            return self.data
        if self.text is not None:
            return self.text
        return v.dumps(_resolve_tokens(self.value, resolve), self.ascii_only)


def _resolve_tokens(value: Any, resolve: Any) -> Any:
    if isinstance(value, Token):
        return resolve(value)
    if isinstance(value, dict):
        return {k: _resolve_tokens(item, resolve) for k, item in value.items()}
    if isinstance(value, list):
        return [_resolve_tokens(item, resolve) for item in value]
    return value


def mutate_token(token: str, mutation: int) -> str:
    """A token that differs from `token`: one character changed, cut, extended, re-padded or re-cased."""
    how, where = mutation % 7, (mutation // 7) % max(1, len(token))
    if how == 0:
        changed = token[:where] + ("A" if token[where] != "A" else "B") + token[where + 1:]
    elif how == 1:
        changed = token[:where]
    elif how == 2:
        changed = token + "="  # base64 padding: the same bytes, but the edge compares text
    elif how == 3:
        changed = token.swapcase()
    elif how == 4:
        changed = token.rpartition(".")[0]
    elif how == 5:
        changed = token.replace(".", "..", 1)
    else:
        changed = token + "\x00"
    return changed if changed != token else token + "x"


NICE_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1,
                    max_size=40)


@cache  # built once: Hypothesis is slow to take in new strategy objects
def _field_strategies(max_depth: int) -> dict[str, dict[str, tuple[st.SearchStrategy[Any], ...]]]:
    """Per frame type and field: (values that are mostly valid, values that are mostly not). The valid
    ones matter as much: a frame that gets past validation reaches the database, Lex and Talkdesk."""
    wrong = st.one_of(v.wrong_values(max_depth), v.strings(40), v.long_text())
    seqs = st.one_of(st.integers(min_value=0, max_value=50), st.sampled_from(v.EDGE_INTS))
    tokens_ = st.one_of(st.builds(Token, st.sampled_from(("own", "ended", "bystander", "bystander", "foreign",
                                                         "forged")), st.integers(0, 10_000)),
                        v.strings(40), v.long_text((0, 1, 511, 512, 513)))
    customer = st.fixed_dictionaries({}, optional={"name": NICE_TEXT, "email": NICE_TEXT, "phone": v.strings()})
    return {
        "hello": {"customer": (customer, wrong), "locale": (st.sampled_from(("en_US", "pt_PT", "")), wrong),
                  "attributes": (st.dictionaries(v.strings(10), v.json_values(6), max_size=4), wrong),
                  "echo": (st.booleans(), wrong)},
        "resume": {"resume_token": (tokens_, wrong), "last_seq": (seqs, wrong), "echo": (st.booleans(), wrong)},
        "message": {"id": (st.one_of(st.uuids().map(str), NICE_TEXT, v.long_text((1, 127, 128, 129))), wrong),
                    "text": (st.one_of(st.sampled_from(BOT_TEXTS), NICE_TEXT, v.strings(60),
                                       v.long_text((1, 1023, 1024, 1025, 4_000))), wrong)},
        "typing": {"active": (st.booleans(), wrong)},
        "ack": {"seq": (seqs, wrong)},
        "end": {},
        "ping": {},
        "rating": {"score": (st.integers(min_value=0, max_value=6), wrong),
                   "comment": (st.one_of(NICE_TEXT, v.long_text((1999, 2000, 2001))), wrong)},
    }


@st.composite
def typed_frames(draw: st.DrawFn, max_depth: int) -> dict[str, Any]:
    """A JSON object with a `type` (usually a real one) and its fields, each valid, wrong or missing,
    plus unknown fields (which the protocol says are ignored)."""
    fields = _field_strategies(max_depth)
    # Messages most: they are what gets stored and travels on to Lex and Talkdesk.
    kind = draw(st.sampled_from(("message", "message", "message", *CLIENT_FRAMES, *CLIENT_FRAMES, "odd")))
    frame: dict[str, Any] = {"type": kind}
    if kind == "odd":  # an unknown type, with some real type's fields
        frame["type"] = draw(st.sampled_from(ODD_TYPES))
        kind = draw(st.sampled_from(list(fields)))
    for name, (good, bad) in fields[kind].items():
        choice = draw(st.sampled_from(("good",) * 7 + ("bad", "bad", "missing")))
        if choice != "missing":
            frame[name] = draw(good if choice == "good" else bad)
    # Hypothesis favours the first of sampled values: the common case goes first.
    if draw(st.sampled_from((False,) * 9 + (True,))):
        frame["type"] = draw(v.wrong_values(max_depth))  # the type itself of the wrong type
    extras = draw(st.dictionaries(st.one_of(v.strings(10), st.sampled_from(("id", "type", "seq", "text"))),
                                  v.json_values(4), max_size=3))
    for name, extra in extras.items():
        frame.setdefault(name, extra)
    return frame


MUTATIONS = ("truncate", "insert", "delete", "replace", "duplicate_type", "array", "bom", "garbage", "spaces",
             "upper", "single_quotes")


@st.composite
def mutated_frames(draw: st.DrawFn, max_depth: int) -> str:
    """A frame's JSON text damaged by one edit."""
    # A resume token stands for itself here: the damage makes the frame unusable anyway.
    text = v.dumps(_resolve_tokens(draw(typed_frames(max_depth)), lambda token: f"token-{token.kind}"))
    how = draw(st.sampled_from(MUTATIONS))
    at = draw(st.integers(0, max(0, len(text) - 1)))
    char = draw(st.one_of(st.sampled_from('{}[]",:\\ \x00'), st.characters(exclude_categories=["Cs"])))
    if how == "truncate":
        return text[:at]
    if how == "insert":
        return text[:at] + char + text[at:]
    if how == "delete":
        return text[:at] + text[at + 1:]
    if how == "replace":
        return text[:at] + char + text[at + 1:]
    if how == "duplicate_type":
        return '{"type": "ping", ' + text[1:] if text.startswith("{") else text
    if how == "array":
        return f"[{text}]"
    if how == "bom":
        return "\ufeff" + text
    if how == "garbage":
        return text + char
    if how == "spaces":
        return " \n\t" + text + " \r\n"
    if how == "upper":
        return text.upper()
    return text.replace('"', "'")


SIZES = (MAX_FRAME - 2, MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 1, MAX_FRAME + 2, 20_000, 40_000, HARD_LIMIT - 1,
         HARD_LIMIT, HARD_LIMIT + 1, HARD_LIMIT + 2, 100_000, 150_000)


@st.composite
def sized_frames(draw: st.DrawFn) -> str:
    """A valid message (or hello) padded to exactly a size around the 16 KiB limit or the 64 KiB hard
    limit, in bytes of UTF-8, with one-, two- or four-byte characters."""
    size = draw(st.sampled_from(SIZES))
    pad = draw(st.sampled_from(("x", "é", "\U0001f600")))
    if draw(st.booleans()):
        frame: dict[str, Any] = {"type": "message", "id": f"sized-{draw(st.uuids()).hex[:12]}", "text": ""}
        key = "text"
    else:
        frame = {"type": "hello", "locale": "en_US", "attributes": {"pad": ""}}
        key = "attributes"
    empty = len(json.dumps(frame, ensure_ascii=False).encode())
    need = max(0, size - empty)
    filler = pad * (need // len(pad.encode())) + "x" * (need % len(pad.encode()))
    if key == "text":
        frame["text"] = filler
    else:
        frame["attributes"] = {"pad": filler}
    return json.dumps(frame, ensure_ascii=False)


@st.composite
def binary_frames(draw: st.DrawFn) -> bytes:
    choice = draw(st.sampled_from(("random", "json", "big")))
    if choice == "random":
        return draw(st.binary(max_size=64))
    if choice == "json":
        return b'{"type": "ping"}'
    return b"x" * draw(st.sampled_from((MAX_FRAME + 1, HARD_LIMIT, HARD_LIMIT + 1)))


INVALID_UTF8 = (b"\xff", b"\xc3", b'{"type": "ping"}\xc3', b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                b'{"type": "message", "id": "u", "text": "\xff"}')


def frame_inputs(max_depth: int) -> st.SearchStrategy[FrameInput]:
    """The mix: typed objects (most), arbitrary JSON values, arbitrary text, damaged JSON, frames
    around the size limits, binary frames and text frames that are not UTF-8."""
    target = st.sampled_from(TARGETS)
    sendable_text = st.text(max_size=100)
    categories = {
        "typed": st.builds(FrameInput, st.just("typed"), target, value=typed_frames(max_depth),
                           ascii_only=st.booleans()),
        "json": st.builds(FrameInput, st.just("json"), target, value=v.json_values(), ascii_only=st.booleans()),
        "text": st.builds(FrameInput, st.just("text"), target, text=st.one_of(sendable_text, st.sampled_from(
            ("", " ", "null", "[]", "{}", "ping", '{"type"}', "\x00", "\ufeff{}")))),
        "mutated": st.builds(FrameInput, st.just("mutated"), target, text=mutated_frames(max_depth)),
        "sized": st.builds(FrameInput, st.just("sized"), target, text=sized_frames()),
        "binary": st.builds(FrameInput, st.just("binary"), target, data=binary_frames()),
        "invalid_utf8": st.builds(FrameInput, st.just("invalid_utf8"), target, data=st.sampled_from(INVALID_UTF8)),
    }
    # Weights by repetition (st.one_of would fold identical branches into one).
    mix = ("typed",) * 10 + ("json", "text", "mutated", "mutated", "sized", "binary", "invalid_utf8")
    return st.sampled_from(mix).flatmap(lambda category: categories[category])


# -- what the protocol says the answer is ------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    answers: frozenset[str]  # "error:<code>", "welcome", "accepted", "pong", or "none" (no answer)
    close: int | None = None  # the server must close with this code instead
    ends: bool = False  # a valid `end` on a started socket: `conversation_ended`, then close 1000


def expect(payload: str | bytes, invalid_utf8: bool, started: bool, ended: bool, valid_tokens: set[str]) -> Expect:
    """The answer docs/protocol.md §2 gives to `payload` on a socket in this state, decided with the protocol's
    own frame models (shared/protocol.py) rather than by asking the edge."""
    if invalid_utf8:
        return Expect(frozenset(), close=1007)  # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection
    size = len(payload) if isinstance(payload, bytes) else len(payload.encode())
    if size > HARD_LIMIT:
        return Expect(frozenset(), close=1009)
    if isinstance(payload, bytes):
        return Expect(frozenset({"error:bad_frame"}))
    if size > MAX_FRAME:
        return Expect(frozenset({"error:too_large"}))
    if json_depth(payload) > MAX_JSON_DEPTH:
        return Expect(frozenset({"error:bad_frame"}))  # refused before parsing (shared/protocol.py)
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # too deep to parse is as unusable as not JSON
        return Expect(frozenset({"error:bad_frame"}))
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return Expect(frozenset({"error:bad_frame"}))
    model = CLIENT_FRAMES.get(data["type"])
    if model is None:
        return Expect(frozenset({"error:unknown_type"}))
    try:
        frame = model.model_validate(data)
    except ValidationError:
        return Expect(frozenset({"error:bad_frame"}))
    kind = data["type"]
    if kind in ("hello", "resume") and started:
        return Expect(frozenset({"error:bad_frame"}))
    if kind == "hello":
        return Expect(frozenset({"welcome"}))
    if kind == "resume":
        return Expect(frozenset({"welcome" if getattr(frame, "resume_token", None) in valid_tokens
                                 else "error:invalid_token"}))
    if kind == "ping":
        return Expect(frozenset({"pong"}))
    if not started:
        return Expect(frozenset({"error:not_started"}))
    if kind == "message":
        if ended:
            return Expect(frozenset({"error:conversation_closed"}))
        # Longer than Lex takes: refused while the bot answers (an agent would take it).
        too_long = {"error:too_large"} if len(getattr(frame, "text", "")) > LEX_MAX_TEXT else set()
        return Expect(frozenset({"accepted", "error:rate_limited", *too_long}))
    if kind == "rating":  # only a chat an agent ended is rated; the fuzzer's are not
        return Expect(frozenset({"error:bad_frame"}))
    if kind == "end" and ended:
        return Expect(frozenset({"error:conversation_closed"}))  # known to be over: answered without a write
    return Expect(frozenset({"none"}), ends=kind == "end")


# -- the sockets ------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    answers: list[dict[str, Any]] = field(default_factory=list)
    pushed: int = 0
    closed: int | None = None  # close code received (1006 when the connection just dropped)
    close_reason: str = ""
    timed_out: bool = False
    garbage: list[str] = field(default_factory=list)  # server frames that are not JSON objects


class Socket:
    """One client socket (websockets' synchronous client: its own thread answers the server's pings)."""

    def __init__(self, url: str, role: str) -> None:
        self.url, self.role = url, role
        # No keep-alive pings of our own (the server pings, and the client answers from its thread): they
        # draw from the `random` module while Hypothesis generates, which Hypothesis takes for a strategy
        # using it.
        # websockets wants its synchronous connect() used as a context manager; the socket outlives this
        # call, so the context is held open in an ExitStack until close().
        self._context = contextlib.ExitStack()
        self.ws: ClientConnection = self._context.enter_context(connect(
            url, proxy=None, max_size=None, compression=None, open_timeout=10, close_timeout=2, ping_interval=None))
        self.conversation_id: str | None = None
        self.token: str | None = None
        self.ended = False  # the conversation has ended (server said so, or it was resumed closed)
        self.saw_ended_event = False
        self.max_seq = 0
        self.acked = 0
        self.accepted = 0
        self.acked_ahead = False  # an ack above max_seq went out on this socket (see known.py)
        self.is_open = True

    def close(self) -> None:
        with contextlib.suppress(WebSocketException, OSError):
            self._context.close()
        self.is_open = False

    def send_raw(self, payload: str | bytes, as_text: bool = False) -> None:
        if isinstance(payload, bytes) and as_text:
            self.ws.send(payload, text=True)
        else:
            self.ws.send(payload)

    def exchange(self, payload: str | bytes, invalid_utf8: bool = False, timeout: float = ANSWER_TIMEOUT) -> Exchange:
        """Send one frame and a sentinel; collect the answers the frame got before the sentinel's."""
        result = Exchange()
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        # A closed connection is read below; the server may also reset it while a frame over the hard
        # limit is still going out (OSError).
        with contextlib.suppress(ConnectionClosed, OSError):
            self.send_raw(payload, as_text=invalid_utf8)
            self.ws.send(json.dumps({"type": SENTINEL_TYPE, "id": sentinel}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.timed_out = True
                return result
            try:
                raw = self.ws.recv(timeout=remaining)
            except TimeoutError:
                result.timed_out = True
                return result
            except ConnectionClosed as exc:
                self.is_open = False
                result.closed = exc.rcvd.code if exc.rcvd is not None else 1006
                result.close_reason = exc.rcvd.reason if exc.rcvd is not None else ""
                return result
            try:
                frame = json.loads(raw)
            except ValueError:
                result.garbage.append(str(raw)[:200])
                continue
            if not isinstance(frame, dict):
                result.garbage.append(str(raw)[:200])
                continue
            if frame.get("type") == "error" and frame.get("id") == sentinel:
                return result
            if frame.get("type") == "status":
                # What became of an earlier message (docs/protocol.md §2): pushed by the workers, not an
                # answer to the frame just sent; its shape is checked all the same.
                known = frame.get("status") in ("delivered", "delayed", "failed")
                if not known or not isinstance(frame.get("id"), str):
                    result.garbage.append(json.dumps(frame)[:200])
                result.pushed += 1
                continue
            if frame.get("type") in ("echo", "tabs"):
                # The conversation's other tabs (§2 "Several tabs"), pushed to a socket that asked for them.
                shaped = (isinstance(frame.get("id"), str) and isinstance(frame.get("text"), str)
                          if frame["type"] == "echo" else isinstance(frame.get("open"), int) and frame["open"] >= 1)
                if not shaped:
                    result.garbage.append(json.dumps(frame)[:200])
                result.pushed += 1
                continue
            if frame.get("type") in ("message", "event") and isinstance(frame.get("seq"), int):
                result.pushed += 1
                self.max_seq = max(self.max_seq, frame["seq"])
                if frame.get("type") == "event" and frame.get("event") == "conversation_ended":
                    self.saw_ended_event = True
                continue
            result.answers.append(frame)

    def ack_pushed(self) -> None:
        """Acknowledge what the workers pushed, as a client does (else the sweep keeps resending it)."""
        if self.is_open and self.max_seq > self.acked:
            try:
                self.ws.send(json.dumps({"type": "ack", "seq": self.max_seq}))
                self.acked = self.max_seq
            except (ConnectionClosed, OSError):
                self.is_open = False

    def wait_closed(self, timeout: float) -> int | None:
        """Read (and drop) frames until the server closes; the close code, or None if it did not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return None
            except ConnectionClosed as exc:
                self.is_open = False
                return exc.rcvd.code if exc.rcvd is not None else 1006
            with contextlib.suppress(ValueError):
                frame = json.loads(raw)
                if isinstance(frame, dict) and isinstance(frame.get("seq"), int):
                    self.max_seq = max(self.max_seq, frame["seq"])
                if isinstance(frame, dict) and frame.get("event") == "conversation_ended":
                    self.saw_ended_event = True
        return None

    def start(self, hello: dict[str, Any] | None = None) -> dict[str, Any]:
        """Say hello (or send `hello` as given) and return the welcome."""
        self.ws.send(json.dumps(hello or {"type": "hello", "customer": {"name": "Fuzz"}}))
        while True:
            frame = json.loads(self.ws.recv(timeout=ANSWER_TIMEOUT))
            if frame.get("type") == "welcome":
                self.conversation_id, self.token = frame["conversation_id"], frame["resume_token"]
                self.ended = frame["state"] == "closed"
                return dict(frame)
            if frame.get("type") == "error":
                raise RuntimeError(f"could not start a conversation: {frame}")


# -- the run -----------------------------------------------------------------------------------------------


class FrameFuzzer:
    """Holds the three target sockets and checks each generated frame's answer."""

    def __init__(self, edge_urls: list[str], bystander_tokens: list[str], backend: str, stats: PhaseStats,
                 violations: Violations, skip_known_bugs: bool) -> None:
        self.edge_urls = edge_urls
        self.bystander_tokens = bystander_tokens
        self.backend = backend
        self.stats, self.violations = stats, violations
        self.skip_known_bugs = skip_known_bugs
        self.valid_tokens: set[str] = set()
        self.own_tokens: list[str] = []
        self.ended_tokens: list[str] = []  # of ended conversations no socket of ours holds any more
        self.sockets: dict[str, Socket] = {}
        self.urls_used = Counter[str]()
        # The fuzzer cannot sign tokens with the edge's secret: only tokens the edge issued are valid.
        self._foreign_secret = secrets.token_bytes(16)

    def _url(self) -> str:
        url = min(self.edge_urls, key=lambda u: self.urls_used[u])  # spread the sockets over the edge nodes
        self.urls_used[url] += 1
        return url

    def _remember(self, socket: Socket) -> None:
        if socket.token:
            self.valid_tokens.add(socket.token)
            if len(self.own_tokens) < 200:
                self.own_tokens.append(socket.token)

    def socket(self, role: str) -> Socket:
        current = self.sockets.get(role)
        if current is not None and current.is_open:
            return current
        sock = Socket(self._url(), role)
        if role == "started":
            sock.start()
        elif role == "ended":
            # An ended conversation, resumed: what a customer who comes back after the end sees.
            first = Socket(self._url(), "ended-setup")
            first.start()
            first.ws.send(json.dumps({"type": "end"}))
            first.wait_closed(ANSWER_TIMEOUT)
            first.close()
            assert first.token is not None
            # last_seq = what the first socket saw, so the `conversation_ended` event is not resent (the edge
            # closes a socket after writing that event).
            sock.start({"type": "resume", "resume_token": first.token, "last_seq": first.max_seq})
            sock.ended = True
        self._remember(sock)
        self.sockets[role] = sock
        return sock

    def resolve_token(self, token: Token) -> str:
        # Not the token of a socket still in use: its conversation resumed elsewhere would get that socket's
        # frames there too (several tabs), an `end` sent there would close this one, and its answers would
        # no longer be the answers to this socket's frames alone.
        live = {sock.token for sock in self.sockets.values() if sock.is_open}
        own = [t for t in self.own_tokens if t not in live]
        if token.kind == "own" and own:
            return own[token.mutation % len(own)]
        if token.kind == "ended" and self.ended_tokens:
            return self.ended_tokens[token.mutation % len(self.ended_tokens)]
        if token.kind in ("bystander", "forged") and self.bystander_tokens:
            real = self.bystander_tokens[token.mutation % len(self.bystander_tokens)]
            if token.kind == "bystander":
                return mutate_token(real, token.mutation)
            return f"{real.rpartition('.')[0]}.{secrets.token_urlsafe(32)}"
        return tokens.issue(self._foreign_secret, str(uuid.uuid4()))

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()

    def run_one(self, item: FrameInput) -> None:
        """Send one generated frame and check its answer; never raises for what the server does."""
        payload = item.render(self.resolve_token)
        bug = frame_bug(payload, self.backend) if item.category != "invalid_utf8" else None
        if bug and self.skip_known_bugs:
            self.stats.skipped_known += 1
            return
        sock = self.socket(item.target)
        invalid_utf8 = item.category == "invalid_utf8"
        if sock.conversation_id is not None and not sock.ended and ack_ahead(payload, sock.max_seq):
            # Acknowledging frames not yet shown makes the server drop the next ones (a known bug): the
            # `end` check below would then wait for a `conversation_ended` that never comes.
            if self.skip_known_bugs:
                self.stats.skipped_known += 1
                return
            sock.acked_ahead = True
        wanted = expect(payload, invalid_utf8, started=sock.conversation_id is not None, ended=sock.ended,
                        valid_tokens=self.valid_tokens)
        result = sock.exchange(payload, invalid_utf8=invalid_utf8)
        self.stats.inputs += 1
        self.stats.categories[item.category] += 1
        outcome = self._check(item, payload, sock, wanted, result, bug)
        self.stats.outcomes[outcome] += 1
        self._after(sock, wanted, result)

    def _check(self, item: FrameInput, payload: str | bytes, sock: Socket, wanted: Expect, result: Exchange,
               bug: str | None) -> str:
        def violation(kind: str, detail: str) -> str:
            self.violations.add("frames", kind, detail, _show(payload), known=bug)
            return kind

        for junk in result.garbage:
            violation("server frame that is not a JSON object", junk)
        signatures = [_signature(a) for a in result.answers]
        for answer, signature in zip(result.answers, signatures, strict=True):
            if signature == "error:unavailable":
                violation("unavailable on a healthy system",
                          "the database is up: `unavailable` means this input broke the write (edge_store_failed)")
            elif not _documented(answer):
                violation(f"undocumented answer {signature}", json.dumps(answer)[:300])
            if answer.get("type") == "error" and "id" in answer:
                sent_id = _frame_id(payload)
                if answer["id"] != sent_id:
                    violation("error echoes another id", f"sent id {sent_id!r}, error says {answer['id']!r}")
        if result.timed_out:
            return violation("no answer within 10 s", f"target={item.target}, answers so far {signatures}")
        if result.closed is not None:
            if result.closed == 1011:
                return violation("socket closed with 1011 (internal error)",
                                 f"target={item.target}; reason {result.close_reason!r}")
            if wanted.close is not None and result.closed == wanted.close:
                return f"closed {result.closed} (expected)"
            if result.closed == 1000 and sock.saw_ended_event:
                return "conversation ended (closed 1000)"
            return violation(f"socket closed with {result.closed}",
                             f"target={item.target}; expected {sorted(wanted.answers) or wanted.close}; "
                             f"reason {result.close_reason!r}; answers {signatures}")
        if wanted.close is not None:
            return violation(f"expected close {wanted.close}, socket stayed open", f"answers {signatures}")
        if "error:unavailable" in signatures:
            return "unavailable on a healthy system"  # reported above, once
        got = signatures[0] if len(signatures) == 1 else "none" if not signatures else "+".join(signatures)
        if got not in wanted.answers:
            return violation(f"answer {got} where docs/protocol.md §2 says {'|'.join(sorted(wanted.answers))}",
                             f"target={item.target} (conversation {sock.conversation_id}); answers "
                             + json.dumps(result.answers)[:400])
        return got

    def _after(self, sock: Socket, wanted: Expect, result: Exchange) -> None:
        """Keep the target sockets in their roles: retire a fresh socket that started a conversation,
        replace closed ones, rotate the started one before the rate limit makes every message bounce."""
        welcome = next((a for a in result.answers if a.get("type") == "welcome"), None)
        if welcome is not None:
            sock.conversation_id, sock.token = welcome.get("conversation_id"), welcome.get("resume_token")
            self._remember(sock)
        sock.accepted += sum(1 for a in result.answers if a.get("type") == "accepted")
        if result.timed_out or result.closed is not None or not sock.is_open:
            sock.close()
            return
        if wanted.ends and not sock.ended:
            code = sock.wait_closed(END_TIMEOUT)
            if code != 1000 or not sock.saw_ended_event:
                self.violations.add("frames", "`end` did not end the conversation and close the socket (1000)",
                                    f"conversation {sock.conversation_id} on {sock.url}: close code {code}, "
                                    f"conversation_ended seen: {sock.saw_ended_event}"
                                    + (", after an ack beyond the frames shown" if sock.acked_ahead else ""),
                                    '{"type": "end"}',
                                    known="ack-beyond-sent-loses-frames" if sock.acked_ahead else None)
            sock.close()
            if sock.token and len(self.ended_tokens) < 50:
                self.ended_tokens.append(sock.token)
            return
        if sock.role == "fresh" and welcome is not None:
            sock.close()  # started: no longer a fresh socket
            return
        if sock.role == "started" and sock.accepted >= ROTATE_AFTER_ACCEPTED:
            sock.close()
            return
        sock.ack_pushed()


def _signature(answer: dict[str, Any]) -> str:
    kind = str(answer.get("type"))
    return f"error:{answer.get('code')}" if kind == "error" else kind


def _documented(answer: dict[str, Any]) -> bool:
    kind = answer.get("type")
    if kind == "error":
        return answer.get("code") in ERROR_CODES and isinstance(answer.get("message"), str)
    if kind == "welcome":
        return (isinstance(answer.get("conversation_id"), str) and isinstance(answer.get("resume_token"), str)
                and answer.get("state") in STATES and isinstance(answer.get("last_seq"), int))
    if kind == "accepted":
        return isinstance(answer.get("id"), str)
    return kind == "pong"


def _frame_id(payload: str | bytes) -> str | None:
    """The id the edge echoes: the frame's `id` when it is a string."""
    if isinstance(payload, bytes):
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) else None


def _show(payload: str | bytes, limit: int = 300) -> str:
    """The input, short enough for a report, with its size when cut."""
    text = repr(payload)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(payload)} {'bytes' if isinstance(payload, bytes) else 'chars'})"
