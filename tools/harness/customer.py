"""A scripted customer speaking the WebSocket protocol the way a careful client does: it shows each
seq once, acknowledges what it showed, and remembers what it displayed for the test to check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]


class Customer:
    def __init__(self, auto_ack: bool = True, source: str | None = None) -> None:
        self.auto_ack = auto_ack
        # The local address to connect from (any of 127.0.0.0/8 on loopback): a customer of its own to
        # the edge's per-address limits.
        self.source = source
        self.ws: ClientConnection | None = None
        self.welcome: Frame | None = None
        self.shown: list[Frame] = []  # seq-carrying frames, each seq once, in display order
        self.duplicates = 0  # resent frames the client dropped (same seq again)
        self.others: list[Frame] = []  # accepted, error, pong ...
        self.received: list[Frame] = []  # every frame, in the order it came
        self.last_seq = 0
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.closed = asyncio.Event()

    async def connect(self, url: str) -> None:
        local = {"local_addr": (self.source, 0)} if self.source else {}
        self.ws = await connect(url, max_size=None, **local)
        self.closed.clear()
        self._reader = asyncio.create_task(self._read())

    async def hello(self, url: str, **fields: Any) -> Frame:
        await self.connect(url)
        await self.send({"type": "hello", **fields})
        self.welcome = await self.wait_other(lambda f: f["type"] == "welcome")
        return self.welcome

    async def resume(self, url: str, last_seq: int | None = None, **fields: Any) -> Frame:
        assert self.welcome is not None
        await self.connect(url)
        seq = self.last_seq if last_seq is None else last_seq
        self.others.clear()
        await self.send({"type": "resume", "resume_token": self.welcome["resume_token"], "last_seq": seq, **fields})
        self.welcome = await self.wait_other(lambda f: f["type"] in ("welcome", "error"))
        return self.welcome

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)

    async def send(self, frame: Frame | str) -> None:
        assert self.ws is not None
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def say(self, text: str, message_id: str | None = None) -> str:
        """Send a message and wait until the edge says it is durable."""
        message_id = message_id or uuid.uuid4().hex
        await self.send({"type": "message", "id": message_id, "text": text})
        await self.wait_other(lambda f: f.get("id") == message_id and f["type"] in ("accepted", "error"))
        return message_id

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.received.append(frame)
                if isinstance(frame.get("seq"), int) and frame["type"] in ("message", "event"):
                    if frame["seq"] <= self.last_seq:
                        self.duplicates += 1
                    else:
                        self.shown.append(frame)
                        self.last_seq = frame["seq"]
                        if self.auto_ack:
                            # The server closes right after `conversation_ended`: an ack that cannot go
                            # out must not stop us reading the frames already received.
                            with contextlib.suppress(ConnectionClosed):
                                await self.ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
                else:
                    self.others.append(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def _wait(self, source: Callable[[], list[Frame]], predicate: Callable[[Frame], bool],
                    timeout: float) -> Frame:
        async def look() -> Frame:
            while True:
                for frame in source():
                    if predicate(frame):
                        return frame
                if self.closed.is_set():
                    raise ConnectionError(f"socket closed; shown={self.shown} others={self.others}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(look(), timeout)
        except TimeoutError:
            raise AssertionError(f"no matching frame in {timeout}s; shown={self.shown} others={self.others}") from None

    async def wait_shown(self, predicate: Callable[[Frame], bool], timeout: float = 20.0) -> Frame:
        return await self._wait(lambda: self.shown, predicate, timeout)

    async def wait_other(self, predicate: Callable[[Frame], bool], timeout: float = 20.0) -> Frame:
        return await self._wait(lambda: self.others, predicate, timeout)

    async def wait_event(self, event: str, timeout: float = 20.0) -> Frame:
        return await self.wait_shown(lambda f: f["type"] == "event" and f["event"] == event, timeout)

    async def wait_text(self, sender: str, contains: str, timeout: float = 20.0) -> Frame:
        return await self.wait_shown(
            lambda f: f["type"] == "message" and f["from"] == sender and contains.lower() in f["text"].lower(), timeout)

    async def wait_status(self, message_id: str, status: str, timeout: float = 20.0) -> Frame:
        """The `status` frame saying what became of the customer's message `message_id`."""
        return await self.wait_other(
            lambda f: f["type"] == "status" and f["id"] == message_id and f["status"] == status, timeout)

    def statuses(self, message_id: str) -> list[str]:
        """Every status the customer was told for one of their messages, in the order told."""
        return [f["status"] for f in self.others if f["type"] == "status" and f["id"] == message_id]

    def echoes(self) -> list[str]:
        """The texts of the `echo` frames: the customer's lines written in other tabs."""
        return [f["text"] for f in self.others if f["type"] == "echo"]

    def texts(self, sender: str | None = None) -> list[str]:
        return [f["text"] for f in self.shown if f["type"] == "message" and (sender is None or f["from"] == sender)]
