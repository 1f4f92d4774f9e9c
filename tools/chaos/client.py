"""A customer client that survives what the chaos suite does to the system, the way a careful browser
client would (docs/protocol.md §2), and records everything the measurement needs.

- It reconnects by itself, alternating edge nodes (the one it was on may be dead), with `resume` and the
  last seq it displayed; a socket that dropped before `welcome` starts over with `hello`.
- A message is resent, with the SAME id, until the edge answers `accepted`: after every reconnect, after
  `unavailable` or `rate_limited`, and when no answer came for a while on a live socket.
- It displays frames strictly in seq order, each seq once, and acknowledges what it displayed. A frame
  that arrives ahead of a missing seq is held, not shown; if the gap is not filled soon it resumes
  from the last seq it displayed (the protocol's way to get frames again). Such gaps are counted: they
  mean the server sent out of order, which a naive client would have turned into a lost frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

Frame = dict[str, Any]

RESEND_AFTER = 8.0  # seconds without `accepted` before the same id goes out again on a live socket
REOPEN_AFTER = 10.0  # seconds without `welcome` before hello/resume goes out again on the same socket
GAP_TIMEOUT = 3.0  # seconds a gap in seq may stay open before we resume to have it filled
TICK = 0.25


@dataclass
class Sent:
    """One customer message, from first send to `accepted` (or a refusal that ends it)."""

    id: str
    text: str
    first_sent: float
    sends: int = 0
    due_at: float = 0.0  # when it should (re)go out, if still not accepted
    accepted_at: float | None = None
    refused: str | None = None  # an error code that means it will never be accepted (conversation_closed)

    @property
    def settled(self) -> bool:
        return self.accepted_at is not None or self.refused is not None


@dataclass
class Shown:
    """A seq-carrying frame as the customer saw it, and when."""

    seq: int
    frame: Frame
    at: float


@dataclass
class ClientStats:
    reconnects: int = 0
    connect_failures: int = 0  # connection attempts refused or timed out
    hellos: int = 0  # more than one: a socket died before `welcome` and we started over
    duplicates_dropped: int = 0  # frames received again for a seq already displayed or held
    wire_gaps: int = 0  # times a frame arrived while an earlier seq was missing
    frames_ahead: int = 0  # frames that arrived ahead of such a gap
    gap_resyncs: int = 0  # gaps that did not fill by themselves: we resumed to get them
    resends: int = 0  # message frames sent again with the same id
    errors: Counter[str] = field(default_factory=Counter)
    nodes: list[str] = field(default_factory=list)  # node_id of every welcome, in order


class RobustCustomer:
    def __init__(self, label: str, edge_urls: list[str], first_edge: int, rng: random.Random,
                 hello: Frame, on_progress: Callable[[], None] | None = None) -> None:
        self.label = label
        self.edge_urls = edge_urls
        self._edge = first_edge % len(edge_urls)
        self._rng = rng
        self._hello = {"type": "hello", **hello}
        self._on_progress = on_progress or (lambda: None)
        self.welcome: Frame | None = None
        self.shown: list[Shown] = []
        self.last_seq = 0
        self.held: dict[int, Frame] = {}
        self._gap_since: float | None = None
        self.sent: dict[str, Sent] = {}
        self.stats = ClientStats()
        self.ended = False  # `conversation_ended` displayed
        self.fatal: str | None = None  # why it gave up reconnecting (invalid resume token)
        self._ws: ClientConnection | None = None
        self._ready = False  # the current socket has had its `welcome`
        self._open_due: float | None = None  # when to send hello/resume again if no `welcome` came
        self._stopping = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what the journey uses -----------------------------------------------------------------------

    @property
    def conversation_id(self) -> str | None:
        return self.welcome["conversation_id"] if self.welcome else None

    async def start(self, timeout: float) -> bool:
        """Connect and say hello; True once there is a conversation."""
        self._task = asyncio.create_task(self._run(), name=f"customer-{self.label}")
        return await self.wait(lambda: self.welcome is not None or self.fatal is not None, timeout) \
            and self.welcome is not None

    async def say(self, message_id: str, text: str, timeout: float) -> Sent:
        """Send and keep resending until the edge has it (`accepted`), it is refused, or time runs out."""
        now = time.monotonic()
        sent = self.sent.setdefault(message_id, Sent(message_id, text, first_sent=now, due_at=now))
        await self._send_due()
        await self.wait(lambda: sent.settled, timeout)
        return sent

    async def wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """`predicate()` once it is truthy, or None when `timeout` runs out."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 1.0))

    def find(self, predicate: Callable[[Frame], bool], start: int = 0) -> Shown | None:
        return next((s for s in self.shown[start:] if predicate(s.frame)), None)

    async def close(self) -> None:
        self._stopping = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 3)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # -- the connection loop ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self._on_progress()

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            url = self.edge_urls[self._edge]
            try:
                async with connect(url, open_timeout=5, close_timeout=2, max_size=None, compression=None,
                                   ping_interval=10, ping_timeout=20) as ws:
                    self._ws = ws
                    await self._open(ws)
                    pump = asyncio.create_task(self._pump(ws))
                    try:
                        await self._read(ws)
                    finally:
                        pump.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await pump
                    backoff = 0.2
            except (OSError, TimeoutError, WebSocketException):
                self.stats.connect_failures += 1
            finally:
                self._ws = None
                self._ready = False
                self._notify()
            if self._stopping or self.ended or self.fatal:
                return
            self.stats.reconnects += 1
            self._edge = (self._edge + 1) % len(self.edge_urls)
            await asyncio.sleep(backoff * (0.5 + self._rng.random()))
            backoff = min(backoff * 2, 3.0)

    async def _open(self, ws: ClientConnection) -> None:
        self._open_due = time.monotonic() + REOPEN_AFTER
        if self.welcome is None:
            self.stats.hellos += 1
            await ws.send(json.dumps(self._hello))
        else:
            await ws.send(json.dumps({"type": "resume", "resume_token": self.welcome["resume_token"],
                                      "last_seq": self.last_seq}))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind in ("message", "event") and isinstance(frame.get("seq"), int):
                    await self._on_seq_frame(ws, frame)
                elif kind == "welcome":
                    await self._on_welcome(frame)
                elif kind == "accepted":
                    sent = self.sent.get(str(frame.get("id")))
                    if sent is not None and sent.accepted_at is None:
                        sent.accepted_at = time.monotonic()
                elif kind == "error":
                    await self._on_error(ws, frame)
                self._notify()

    async def _on_welcome(self, frame: Frame) -> None:
        if self.welcome is None:
            self.welcome = frame
        else:
            self.welcome = {**frame, "resume_token": frame.get("resume_token", self.welcome["resume_token"])}
        self.stats.nodes.append(str(frame.get("node_id")))
        self._ready = True
        if self.held:  # a gap carried over from the last socket: give this one time to fill it
            self._gap_since = time.monotonic()
        # Everything not yet accepted goes out again, in the order it was first sent, same ids.
        for sent in self.sent.values():
            if not sent.settled:
                sent.due_at = 0.0
        await self._send_due()

    async def _on_error(self, ws: ClientConnection, frame: Frame) -> None:
        code = str(frame.get("code"))
        self.stats.errors[code] += 1
        sent = self.sent.get(str(frame.get("id"))) if frame.get("id") else None
        if code == "invalid_token":
            self.fatal = f"resume refused: {frame.get('message')}"
            await ws.close()
        elif code == "unavailable" and not self._ready and not frame.get("id"):
            self._open_due = time.monotonic() + 1.0  # the edge could not store hello/resume: again soon
        elif sent is not None and code == "conversation_closed":
            sent.refused = code
        elif sent is not None and code in ("unavailable", "rate_limited", "not_started"):
            sent.due_at = time.monotonic() + (2.0 if code == "rate_limited" else 1.0)

    async def _on_seq_frame(self, ws: ClientConnection, frame: Frame) -> None:
        seq = int(frame["seq"])
        if seq <= self.last_seq or seq in self.held:
            self.stats.duplicates_dropped += 1
            if seq <= self.last_seq:  # sent again because our ack was lost: say it again
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(json.dumps({"type": "ack", "seq": self.last_seq}))
            return
        if seq > self.last_seq + 1:
            if self._gap_since is None:
                self.stats.wire_gaps += 1
                self._gap_since = time.monotonic()
            self.stats.frames_ahead += 1
            self.held[seq] = frame
            return
        self._display(frame)
        while self.last_seq + 1 in self.held:
            self._display(self.held.pop(self.last_seq + 1))
        if not self.held:
            self._gap_since = None
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({"type": "ack", "seq": self.last_seq}))

    def _display(self, frame: Frame) -> None:
        self.last_seq = int(frame["seq"])
        self.shown.append(Shown(self.last_seq, frame, time.monotonic()))
        if frame.get("type") == "event" and frame.get("event") == "conversation_ended":
            self.ended = True

    async def _pump(self, ws: ClientConnection) -> None:
        """Resends what is due (hello/resume included), and resumes when a gap in seq stays open."""
        while True:
            await asyncio.sleep(TICK)
            if not self._ready and self._open_due is not None and time.monotonic() >= self._open_due:
                with contextlib.suppress(ConnectionClosed):
                    await self._open(ws)
            if self._gap_since is not None and time.monotonic() - self._gap_since > GAP_TIMEOUT:
                self.stats.gap_resyncs += 1
                self._gap_since = None
                await ws.close()  # the loop resumes from last_seq; held frames stay held
                return
            await self._send_due()

    async def _send_due(self) -> None:
        ws = self._ws
        if ws is None or not self._ready:
            return
        now = time.monotonic()
        for sent in self.sent.values():
            if sent.settled or sent.due_at > now:
                continue
            if sent.sends:
                self.stats.resends += 1
            sent.sends += 1
            sent.due_at = now + RESEND_AFTER
            try:
                await ws.send(json.dumps({"type": "message", "id": sent.id, "text": sent.text}))
            except ConnectionClosed:
                return
