"""In-memory session store of the Lex emulator, safe to use from threads and the event loop.

Sessions are keyed by (botId, botAliasId, localeId, sessionId), as in Lex, and expire after the bot's
idle session TTL. Reads and writes for one turn happen under one lock (a turn's computation is quick
and pure), so concurrent turns of a session are serialised instead of losing updates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from emulators.lex.engine import Conversation

SessionKey = tuple[str, str, str, str]


@dataclass
class _Entry:
    conversation: Conversation
    touched: float
    ttl: float


class SessionStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[SessionKey, _Entry] = {}

    @contextmanager
    def transaction(self) -> Iterator[SessionStore]:
        """Hold the store's lock for a read-modify-write sequence."""
        with self._lock:
            yield self

    def get(self, key: SessionKey) -> Conversation | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() - entry.touched > entry.ttl:
                del self._entries[key]
                return None
            return entry.conversation

    def put(self, key: SessionKey, conversation: Conversation, ttl_seconds: float) -> None:
        with self._lock:
            self._entries[key] = _Entry(conversation, self._clock(), ttl_seconds)

    def delete(self, key: SessionKey) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
