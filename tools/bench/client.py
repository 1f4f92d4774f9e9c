"""A lean scripted customer for load: it behaves like `tools.harness.customer.Customer` (shows each
seq once, acknowledges it, resends nothing) but stamps every frame with the moment it was read off the
socket. Latency is then measured at receipt, not when a waiting coroutine happens to be scheduled,
which with a hundred customers on one event loop would add the loop's queueing to every sample."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]


@dataclass
class Stamped:
    at: float  # time.perf_counter() when read
    wall: float  # time.time() when read, to line up with the database's timestamps
    frame: Frame


@dataclass
class Sent:
    message_id: str
    text: str
    at: float
    wall: float


class FrameTimeout(Exception):
    """No matching frame before the deadline."""


@dataclass
class BenchClient:
    name: str
    ws: ClientConnection | None = None
    welcome: Frame | None = None
    shown: list[Stamped] = field(default_factory=list)  # seq frames, each seq once, in order
    others: list[Stamped] = field(default_factory=list)  # welcome, accepted, error, pong
    last_seq: int = 0
    duplicates: int = 0  # a seq seen again (a resend the client drops)
    gaps: int = 0  # a seq that skipped ahead: a lost frame, which must never happen
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    async def hello(self, url: str, timeout: float) -> float:
        """Connect, say hello, wait for `welcome`; returns the seconds that took."""
        started = time.perf_counter()
        # No compression (the edge refuses it anyway) and no client pings: the edge pings every 20s,
        # and a thousand idle clients pinging too would be load the edge never sees from browsers.
        self.ws = await asyncio.wait_for(connect(url, max_size=None, compression=None, ping_interval=None,
                                                 open_timeout=timeout), timeout)
        self._reader = asyncio.create_task(self._read(), name=f"bench-read-{self.name}")
        await self.ws.send(json.dumps({"type": "hello", "customer": {"name": self.name},
                                       "attributes": {"source": "lexdesk-bench"}}))
        found = await self.wait_other(lambda f: f["type"] in ("welcome", "error"), 0, started + timeout)
        if found.frame["type"] != "welcome":
            raise ConnectionError(f"{self.name}: hello refused: {found.frame}")
        self.welcome = found.frame
        return found.at - started

    async def send_message(self, message_id: str, text: str) -> Sent:
        assert self.ws is not None
        sent = Sent(message_id, text, time.perf_counter(), time.time())
        await self.ws.send(json.dumps({"type": "message", "id": message_id, "text": text}))
        return sent

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 10)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                at, wall = time.perf_counter(), time.time()
                frame = json.loads(raw)
                seq = frame.get("seq")
                if isinstance(seq, int) and frame.get("type") in ("message", "event"):
                    if seq <= self.last_seq:
                        self.duplicates += 1
                    else:
                        if seq != self.last_seq + 1:
                            self.gaps += 1
                        self.shown.append(Stamped(at, wall, frame))
                        self.last_seq = seq
                        # Acknowledge like a browser does: it is part of the load (routing.customer_acks),
                        # and unacknowledged frames would be resent by the sweep.
                        with contextlib.suppress(ConnectionClosed):
                            await self.ws.send(json.dumps({"type": "ack", "seq": seq}))
                else:
                    self.others.append(Stamped(at, wall, frame))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def _wait(self, source: list[Stamped], predicate: Callable[[Frame], bool], start: int,
                    deadline: float) -> Stamped:
        """First frame of `source` from index `start` on that matches, waiting until `deadline`
        (a perf_counter value)."""
        index = start
        while True:
            while index < len(source):
                if predicate(source[index].frame):
                    return source[index]
                index += 1
            if self.closed.is_set():
                raise ConnectionError(f"{self.name}: socket closed")
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise FrameTimeout(self.name)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_shown(self, predicate: Callable[[Frame], bool], start: int, deadline: float) -> Stamped:
        return await self._wait(self.shown, predicate, start, deadline)

    async def wait_other(self, predicate: Callable[[Frame], bool], start: int, deadline: float) -> Stamped:
        return await self._wait(self.others, predicate, start, deadline)
