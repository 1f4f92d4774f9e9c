"""Agent typing, sent beside the ordered callback queue: best effort, latest wins, never in a message's way.

Not through the queue: a typing callback lexdesk is slow to take would hold back the messages behind it,
and a late "typing" is worth nothing. So each conversation has at most one typing callback going out; a
newer one replaces it, and an agent message or a close cancels it (lexdesk takes a message as the end of
typing, so no "false" needs to go before one). A typing callback first waits, briefly, until the agent's
join has gone out: lexdesk has nobody to show as typing before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .callbacks import BEST_EFFORT, CallbackSender
from .state import Conversation, Store

log = logging.getLogger(__name__)

JOIN_WAIT = 5.0
"""Seconds a typing callback waits for the join to go out before it is dropped."""
JOIN_POLL = 0.05


def join_heard(conv: Conversation) -> bool:
    """Whether the agent-joined callback has gone out (delivered, or given up on), not merely queued."""
    return conv.agent_joined_at is not None and conv.callback_in_flight != "join"


class TypingLane:
    """One best-effort typing callback at a time per conversation; used from the event loop only."""

    def __init__(self, sender: CallbackSender, store: Store) -> None:
        self._sender = sender
        self._store = store
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def send(self, conv: Conversation, active: bool) -> None:
        """Tell lexdesk the agent started (or stopped) typing, replacing any typing still going out."""
        self.cancel(conv.id)
        self._tasks[conv.id] = asyncio.create_task(self._send(conv.id, active), name=f"talkdesk-typing-{conv.id}")

    def cancel(self, conversation_id: str) -> None:
        task = self._tasks.pop(conversation_id, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send(self, conversation_id: str, active: bool) -> None:
        try:
            conv = await self._joined(conversation_id)
            if conv is None:
                return
            path = f"/talkdesk/conversations/{conv.id}/typing"
            await self._sender.deliver(conv, path, {"active": active}, BEST_EFFORT)
            self._store.save(conv)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._store.stats.callback_failures += 1
            log.exception("talkdesk emulator: typing callback failed for %s", conversation_id)
        finally:
            if self._tasks.get(conversation_id) is asyncio.current_task():
                del self._tasks[conversation_id]

    async def _joined(self, conversation_id: str) -> Conversation | None:
        """The conversation once its join has gone out; None if it ended, was forgotten, or the join is
        still not out after JOIN_WAIT (the typing is stale by then)."""
        deadline = time.monotonic() + JOIN_WAIT
        while True:
            conv = self._store.get(conversation_id)
            if conv is None or conv.status == "ended":
                return None
            if join_heard(conv):
                return conv
            if time.monotonic() >= deadline:
                conv.record("typing_dropped", reason="the agent's join had not gone out")
                self._store.save(conv)
                return None
            await asyncio.sleep(JOIN_POLL)
