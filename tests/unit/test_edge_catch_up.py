"""The edge node's side of a resumed socket's catch-up (services/edge/server.py): live frames that come
before the catch-up wait behind it, what the catch-up repeats is written once, and a catch-up that never
comes closes the socket (1013) so the client resumes again, instead of showing nothing for ever."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.edge import server
from services.edge.server import EdgeServer
from services.edge.sessions import CustomerSession, RateLimiter
from shared.edge_bus import CATCH_UP_DONE, CATCH_UP_MORE
from shared.settings import Settings

CONVERSATION = "conversation-1"


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed_with: int | None = None

    async def send(self, raw: str) -> None:
        self.sent.append(json.loads(raw))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code


def edge_with_socket(echo: bool = True) -> tuple[EdgeServer, CustomerSession, FakeSocket]:
    edge = EdgeServer(Settings(resume_token_secret="s" * 32, data_key="d" * 32))
    socket = FakeSocket()
    session = CustomerSession(connection_id="tab", websocket=socket, dialect="native",  # type: ignore[arg-type]
                              limiter=RateLimiter(10, 10), conversation_id=CONVERSATION, echo=echo)
    edge.registry.add(session)
    return edge, session, socket


def envelope(frames: list[dict[str, Any]], catch_up: str | None = None, ids: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"conversation_id": CONVERSATION, "connection_ids": ids or ["tab"], "frames": frames}
    if catch_up:
        body["catch_up"] = catch_up
    return body


def message(seq: int) -> dict[str, Any]:
    return {"type": "message", "seq": seq, "from": "agent", "text": f"line {seq}"}


async def written(edge: EdgeServer, session: CustomerSession, socket: FakeSocket, count: int) -> list[Any]:
    writer = asyncio.create_task(edge._write_frames(session))
    for _ in range(100):
        if len(socket.sent) >= count:
            break
        await asyncio.sleep(0.01)
    writer.cancel()
    return [f.get("seq", f.get("id")) for f in socket.sent]


def test_live_frames_wait_behind_the_catch_up_and_each_seq_is_written_once() -> None:
    async def scenario() -> list[Any]:
        edge, session, socket = edge_with_socket()
        edge._await_catch_up(session)
        edge._on_envelope(envelope([message(4)]))  # live, published before the catch-up's lock
        edge._on_envelope(envelope([message(5)]))  # live, after it
        edge._on_envelope(envelope([message(1), {"type": "echo", "id": "c-1", "text": "hi", "after_seq": 1},
                                    message(2)], CATCH_UP_MORE))
        assert session.catching_up  # not done yet: the live ones still wait
        edge._on_envelope(envelope([message(3), message(4)], CATCH_UP_DONE))
        return await written(edge, session, socket, 6)

    assert asyncio.run(scenario()) == [1, "c-1", 2, 3, 4, 5]


def test_a_socket_that_did_not_ask_for_echoes_gets_none() -> None:
    async def scenario() -> list[Any]:
        edge, session, socket = edge_with_socket(echo=False)
        edge._on_envelope(envelope([{"type": "echo", "id": "c-1", "text": "hi", "after_seq": 0}, message(1)]))
        return await written(edge, session, socket, 1)

    assert asyncio.run(scenario()) == [1]


def test_one_envelope_reaches_every_named_socket_of_the_conversation_and_no_other() -> None:
    async def scenario() -> tuple[int, int, int]:
        edge, first, _ = edge_with_socket()
        second = CustomerSession(connection_id="tab-2", websocket=FakeSocket(), dialect="native",  # type: ignore[arg-type]
                                 limiter=RateLimiter(10, 10), conversation_id=CONVERSATION)
        stranger = CustomerSession(connection_id="stranger", websocket=FakeSocket(), dialect="native",  # type: ignore[arg-type]
                                   limiter=RateLimiter(10, 10), conversation_id="someone-else")
        for session in (second, stranger):
            edge.registry.add(session)
        # "stranger" named in an envelope of another conversation (a stale or forged address) gets nothing.
        edge._on_envelope(envelope([message(1)], ids=["tab", "tab-2", "stranger", "gone"]))
        return first.outbound.qsize(), second.outbound.qsize(), stranger.outbound.qsize()

    assert asyncio.run(scenario()) == (1, 1, 0)


def test_a_catch_up_that_never_comes_closes_the_socket_to_be_resumed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "CATCH_UP_TIMEOUT_SECONDS", 0.05)

    async def scenario() -> tuple[int | None, bool]:
        edge, session, socket = edge_with_socket()
        edge._await_catch_up(session)
        edge._on_envelope(envelope([message(7)]))
        await asyncio.sleep(0.2)
        return socket.closed_with, session.catching_up

    assert asyncio.run(scenario()) == (1013, False)


def test_too_many_frames_held_for_a_catch_up_close_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "MAX_HELD_FRAMES", 10)

    async def scenario() -> tuple[int | None, int]:
        edge, session, socket = edge_with_socket()
        edge._await_catch_up(session)
        for seq in range(1, 13):
            edge._on_envelope(envelope([message(seq)]))
        await asyncio.sleep(0.05)
        return socket.closed_with, len(session.held)

    assert asyncio.run(scenario()) == (1013, 0)
