"""The sockets this node holds: the only state an edge node keeps in memory."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection


@dataclass
class RateLimiter:
    """Token bucket: `capacity` frames per `window` seconds, refilled continuously."""

    capacity: int
    window: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def allow(self) -> bool:
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = float(self.capacity)
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.capacity / self.window)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class CustomerSession:
    connection_id: str
    websocket: ServerConnection
    dialect: str  # native | lexwebui
    limiter: RateLimiter
    conversation_id: str | None = None
    closed: bool = False  # the conversation has ended
    acked_seq: int = 0
    written_seq: int = 0  # the highest seq written to this socket
    ack_flush: asyncio.Task[None] | None = None
    outbound: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class SessionRegistry:
    def __init__(self) -> None:
        self._by_connection: dict[str, CustomerSession] = {}

    def add(self, session: CustomerSession) -> None:
        self._by_connection[session.connection_id] = session

    def remove(self, connection_id: str) -> None:
        self._by_connection.pop(connection_id, None)

    def get(self, connection_id: str) -> CustomerSession | None:
        return self._by_connection.get(connection_id)

    def __len__(self) -> int:
        return len(self._by_connection)
