"""The sockets this node holds, and the limits on what they may do: the only state an edge node keeps
in memory. The limits are counted here, in memory and per edge node, so that checking one is O(1) on
the event loop and comes before any database work; a client spread over several nodes gets each node's
allowance, which bounds it all the same."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
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
        if self.ready():
            self.take()
            return True
        return False

    def ready(self) -> bool:
        """Whether a frame may pass now (takes nothing)."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = float(self.capacity)
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.capacity / self.window)
        self.updated = now
        return self.tokens >= 1

    def take(self) -> None:
        self.tokens -= 1


def client_key(address: str) -> str:
    """What the per-address limits count by: the IPv4 address, or the IPv6 /64 (one customer's network
    gets a whole /64, and could otherwise take a fresh address for every socket)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a proxy's odd header): counted as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def first_exhausted(limiters: Sequence[RateLimiter]) -> int | None:
    """Take one token from every limiter if each has one and return None; otherwise take nothing and
    return the index of the first that is empty. A frame refused by one limit (the address's, say)
    must not use up the others (the customer's own socket and conversation)."""
    for index, limiter in enumerate(limiters):
        if not limiter.ready():
            return index
    for limiter in limiters:
        limiter.take()
    return None


class KeyedRateLimiters:
    """A RateLimiter per key (a conversation, a client address). A bucket nobody used for a whole window
    is full again, exactly as a new one would be, so it is forgotten: memory follows the keys active in
    the last window. Kept in order of use, so forgetting looks only at the oldest ones (amortised O(1))."""

    def __init__(self, capacity: int, window: float) -> None:
        self.capacity, self.window = capacity, window
        self._by_key: OrderedDict[str, RateLimiter] = OrderedDict()

    def get(self, key: str) -> RateLimiter:
        now = time.monotonic()
        while self._by_key:
            oldest = next(iter(self._by_key.values()))
            if now - oldest.updated < self.window:
                break
            self._by_key.popitem(last=False)
        limiter = self._by_key.pop(key, None) or RateLimiter(self.capacity, self.window)
        self._by_key[key] = limiter
        return limiter

    def __len__(self) -> int:
        return len(self._by_key)


class SlidingWindowCounter:
    """At most `limit` events per key in any `window` seconds. Each key keeps the times of its events in
    the window (at most `limit` of them); keys with none left are forgotten, oldest-used first."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._by_key: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        """Count an event for `key` unless it would exceed the limit (a refused one is not counted)."""
        now = time.monotonic()
        horizon = now - self.window
        while self._by_key:
            oldest = next(iter(self._by_key.values()))
            if oldest and oldest[-1] > horizon:
                break
            self._by_key.popitem(last=False)
        times = self._by_key.pop(key, None) or deque()
        while times and times[0] <= horizon:
            times.popleft()
        self._by_key[key] = times
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def __len__(self) -> int:
        return len(self._by_key)


@dataclass
class Admission:
    """A socket let in at the upgrade, counted against its client address until its TCP connection is gone."""

    address: str
    started: bool = False  # a hello or resume has succeeded: it no longer counts as unstarted
    released: bool = False


class AddressLimits:
    """What one client address may hold and open (docs/protocol.md §2 extension: 429 at the upgrade)."""

    def __init__(self, max_sockets: int, max_unstarted: int, new_sockets: int, new_sockets_window: float,
                 new_conversations: int, new_conversations_window: float) -> None:
        self.max_sockets, self.max_unstarted = max_sockets, max_unstarted
        self._open: dict[str, int] = {}
        self._unstarted: dict[str, int] = {}
        self._new_sockets = SlidingWindowCounter(new_sockets, new_sockets_window)
        self._new_conversations = SlidingWindowCounter(new_conversations, new_conversations_window)

    def admit(self, address: str) -> Admission | str:
        """An Admission for a new socket from `address`, or why it is refused."""
        if self._open.get(address, 0) >= self.max_sockets:
            return f"too many open sockets from your address (at most {self.max_sockets})"
        if self._unstarted.get(address, 0) >= self.max_unstarted:
            return f"too many sockets without hello from your address (at most {self.max_unstarted})"
        if not self._new_sockets.allow(address):
            return (f"too many new sockets from your address (at most {self._new_sockets.limit} in "
                    f"{self._new_sockets.window:g}s)")
        self._open[address] = self._open.get(address, 0) + 1
        self._unstarted[address] = self._unstarted.get(address, 0) + 1
        return Admission(address)

    def start(self, admission: Admission) -> None:
        if not admission.started and not admission.released:
            admission.started = True
            _decrement(self._unstarted, admission.address)

    def release(self, admission: Admission) -> None:
        if admission.released:
            return
        admission.released = True
        _decrement(self._open, admission.address)
        if not admission.started:
            _decrement(self._unstarted, admission.address)

    def allow_conversation(self, address: str) -> bool:
        """Count a new conversation (hello) for `address`, unless it has had its share of the window."""
        return self._new_conversations.allow(address)

    def open_sockets(self, address: str) -> int:
        return self._open.get(address, 0)


def _decrement(counts: dict[str, int], key: str) -> None:
    # Zero counts are dropped: the dict holds only the addresses that have sockets open.
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


@dataclass
class TypingThrottle:
    """Which of a socket's `typing` frames go on to the agent: a change at once, a `true` repeated at
    most every `refresh` seconds while the customer keeps typing (the agent's side lets one lapse by
    itself), and none sooner than `min_interval` after the last, whatever the client sends: a socket
    flipping it in a loop costs one task a second at most. (A `false` that comes too soon is dropped:
    the customer's message, or the lapse, ends the indicator.)"""

    refresh: float = 4.0
    min_interval: float = 1.0
    active: bool = False
    last_sent: float = float("-inf")

    def forward(self, active: bool, now: float) -> bool:
        if now - self.last_sent < self.min_interval:
            return False
        if active == self.active and (not active or now - self.last_sent < self.refresh):
            return False
        self.active, self.last_sent = active, now
        return True


@dataclass
class CustomerSession:
    connection_id: str
    websocket: ServerConnection
    dialect: str  # native | lexwebui
    limiter: RateLimiter
    address: str = ""  # the client address the per-address limits count against
    admission: Admission | None = None
    starting: bool = False  # a hello or resume is being stored: the hello timeout waits for it
    hello_timer: asyncio.TimerHandle | None = None
    hello_closer: asyncio.Task[None] | None = None  # closing it for want of a hello (kept: tasks are weak)
    conversation_id: str | None = None
    closed: bool = False  # the conversation has ended
    acked_seq: int = 0
    written_seq: int = 0  # the highest seq written to this socket
    outbound: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    echo: bool = False  # the client asked for `echo` frames (the customer's lines from other tabs)
    # Resumed, and its catch-up (routing.customer_resumed) not all here yet: the conversation's live
    # frames wait in `held` behind it, so the socket is shown every seq once and in order.
    catching_up: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)
    catch_up_timer: asyncio.TimerHandle | None = None
    closer: asyncio.Task[None] | None = None  # closing it for want of a catch-up (kept: tasks are weak)
    # An agent has the chat, as far as the frames this socket was written say: only then does the
    # customer's typing go on (to the agent).
    agent_active: bool = False
    typing: TypingThrottle = field(default_factory=TypingThrottle)


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
