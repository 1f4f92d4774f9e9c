"""The emulated Talkdesk agent: joins, greets, echoes, closes, and relays what a person types at /console.

Everything the agent does reaches lexdesk as an HTTP callback. Per conversation, callbacks go out strictly
in order through one queue and one worker task (started when there is work, ended when there is none).
Each finished job saves its conversation; with a state file, `resume()` re-queues at start-up what the
previous process left undone (the join, queued messages, a pending close): at least once, since a
callback that went out just before a crash is sent again, with the same message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .config import EmulatorConfig
from .state import AgentMessage, Conversation, Store, new_id, now_iso

log = logging.getLogger(__name__)

CLOSE_COMMANDS = frozenset({"close", "/close"})
GOODBYE = "Thanks for chatting with us. Goodbye!"
MAX_ATTEMPTS = 10
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 5.0
CALLBACK_TIMEOUT = 5.0


@dataclass
class Job:
    kind: Literal["join", "message", "close"]
    delay: float = 0.0
    scripted: bool = False
    message: AgentMessage | None = None
    reason: str = "agent_closed"
    resend: bool = False
    """Only the callback of a join or close whose effect is saved but whose callback may not have gone out."""


class Agent:
    def __init__(self, config: EmulatorConfig, store: Store) -> None:
        self._config = config
        self._store = store
        self._queues: dict[str, asyncio.Queue[Job]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._config.callback_url)

    # lifecycle

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=CALLBACK_TIMEOUT)

    async def stop(self) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queues.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # what happens to a conversation

    def conversation_created(self, conv: Conversation) -> None:
        if not self.enabled:
            return
        self._enqueue(conv.id, Job("join", delay=self._config.agent_join_delay))
        if self._config.scripted_agent:
            greeting = f"Hi, this is {self._config.agent_name}. How can I help you today?"
            self._enqueue_message(conv, greeting, "scripted", delay=self._config.agent_reply_delay)

    def customer_message(self, conv: Conversation, content: str) -> None:
        if not (self.enabled and self._config.scripted_agent) or conv.taken_over or conv.closing:
            return
        delay = self._config.agent_reply_delay
        if content.strip().lower() in CLOSE_COMMANDS:
            conv.closing = True
            conv.close_scripted = True
            self._enqueue_message(conv, GOODBYE, "scripted", delay=delay)
            self._enqueue(conv.id, Job("close", scripted=True))
        else:
            self._enqueue_message(conv, f"You said: {content}", "scripted", delay=delay)

    def customer_left(self, conv: Conversation) -> None:
        """The conversation was ended by DELETE: nothing more goes out for it."""
        self.forget(conv.id)
        for message in conv.agent_messages:
            if message.delivery == "queued":
                message.delivery = "dropped"

    def forget(self, conversation_id: str) -> None:
        """Stop acting on a conversation: its pending jobs go, a callback in flight is cancelled."""
        task = self._workers.pop(conversation_id, None)
        if task is not None:
            task.cancel()
        self._queues.pop(conversation_id, None)

    def resume(self) -> None:
        """Re-queue, in their original order, the jobs of conversations read back from a state file.

        A job is saved as done only once it is (`_run`), so what is not marked done here was not.
        """
        for conv in list(self._store.conversations.values()):
            if conv.status == "ended":
                self._drop_queued(conv)
                if self.enabled and conv.callback_in_flight == "close":
                    self._enqueue(conv.id, Job("close", resend=True))
                continue
            if not self.enabled:
                continue
            if conv.agent_joined_at is None:
                self._enqueue(conv.id, Job("join"))
            elif conv.callback_in_flight == "join":
                self._enqueue(conv.id, Job("join", resend=True))
            for message in conv.agent_messages:
                if message.delivery == "queued":
                    self._enqueue(conv.id, Job("message", scripted=message.source == "scripted", message=message))
            if conv.closing:
                self._enqueue(conv.id, Job("close", scripted=conv.close_scripted))

    def _drop_queued(self, conv: Conversation) -> None:
        queued = [m for m in conv.agent_messages if m.delivery == "queued"]
        for message in queued:
            message.delivery = "dropped"
        if queued:
            self._store.save(conv)

    def take_over(self, conv: Conversation) -> None:
        if not conv.taken_over:
            conv.taken_over = True
            conv.record("taken_over")

    def console_message(self, conv: Conversation, content: str) -> AgentMessage:
        self.take_over(conv)
        return self._enqueue_message(conv, content, "console")

    def console_close(self, conv: Conversation) -> None:
        conv.record("close_requested", by="console")
        if not self.enabled:
            conv.end("agent")
            return
        conv.closing = True
        conv.close_scripted = False
        self._enqueue(conv.id, Job("close"))

    # queue and worker

    def _enqueue_message(
        self, conv: Conversation, content: str, source: Literal["scripted", "console"], delay: float = 0.0
    ) -> AgentMessage:
        message = AgentMessage(
            seq=conv.next_seq(),
            id=new_id(),
            content=content,
            author_name=self._config.agent_name,
            source=source,
            queued_at=now_iso(),
        )
        conv.agent_messages.append(message)
        self._store.stats.agent_messages_queued += 1
        if not self.enabled:
            message.created_at = message.queued_at
            message.delivery = "not_sent"
            return message
        self._enqueue(conv.id, Job("message", delay=delay, scripted=source == "scripted", message=message))
        return message

    def _enqueue(self, conversation_id: str, job: Job) -> None:
        queue = self._queues.setdefault(conversation_id, asyncio.Queue())
        queue.put_nowait(job)
        if conversation_id not in self._workers:
            self._workers[conversation_id] = asyncio.create_task(
                self._work(conversation_id, queue), name=f"talkdesk-agent-{conversation_id}"
            )

    async def _work(self, conversation_id: str, queue: asyncio.Queue[Job]) -> None:
        try:
            while True:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    await self._run(conversation_id, job)
                except Exception:
                    self._store.stats.callback_failures += 1
                    log.exception("talkdesk emulator agent: %s job failed for %s", job.kind, conversation_id)
        finally:
            if self._workers.get(conversation_id) is asyncio.current_task():
                del self._workers[conversation_id]
                if queue.empty() and self._queues.get(conversation_id) is queue:
                    del self._queues[conversation_id]

    async def _run(self, conversation_id: str, job: Job) -> None:
        if job.delay > 0:
            await asyncio.sleep(job.delay)
        conv = self._store.get(conversation_id)
        if conv is None:
            return
        try:
            await self._act(conv, job)
        except asyncio.CancelledError:
            # Not done (shutdown; DELETE and forget save, or drop, the conversation themselves): the file
            # keeps the job undone, so an emulator restarted on it does the job again.
            raise
        except Exception:
            self._store.save(conv)
            raise
        self._store.save(conv)

    async def _act(self, conv: Conversation, job: Job) -> None:
        path = f"/talkdesk/conversations/{conv.id}"
        if job.resend:
            if job.kind == "join":
                await self._deliver(conv, f"{path}/agent-joined", {"agent_name": self._config.agent_name})
            else:
                await self._deliver(conv, f"{path}/close", {"reason": job.reason})
            conv.callback_in_flight = None
            return
        if conv.status == "ended" or (job.scripted and conv.taken_over):
            if job.message is not None:
                job.message.delivery = "dropped"
            if job.kind == "close" and conv.status == "open":
                conv.closing = False
            return
        if job.kind == "join":
            conv.agent_joined_at = now_iso()
            conv.record("agent_joined", agent_name=self._config.agent_name)
            conv.callback_in_flight = "join"
            await self._deliver(conv, f"{path}/agent-joined", {"agent_name": self._config.agent_name})
            conv.callback_in_flight = None
        elif job.kind == "message" and job.message is not None:
            message = job.message
            message.created_at = now_iso()
            conv.record("agent_message", id=message.id, source=message.source)
            delivered = await self._deliver(conv, f"{path}/messages", message.payload())
            message.delivery = "delivered" if delivered else "failed"
        elif job.kind == "close":
            conv.end("agent")
            conv.callback_in_flight = "close"
            await self._deliver(conv, f"{path}/close", {"reason": job.reason})
            conv.callback_in_flight = None

    async def _deliver(self, conv: Conversation, path: str, body: dict[str, Any]) -> bool:
        """POST one callback; retry connection errors, 5xx and 429 with backoff; never other 4xx."""
        assert self._config.callback_url is not None
        if self._client is None:
            await self.start()
        assert self._client is not None
        url = self._config.callback_url.rstrip("/") + path
        headers = {"X-Api-Key": self._config.callback_api_key} if self._config.callback_api_key else {}
        stats = self._store.stats
        backoff = FIRST_BACKOFF
        problem = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            wait = backoff
            try:
                response = await self._client.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    stats.callbacks_delivered += 1
                    conv.record("callback_delivered", path=path, status=response.status_code, attempts=attempt)
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    stats.callback_failures += 1
                    conv.record("callback_failed", path=path, error=problem, attempts=attempt, retried=False)
                    return False
                wait = max(wait, _retry_after(response))
            if attempt < MAX_ATTEMPTS:
                stats.callback_retries += 1
                await asyncio.sleep(min(wait, MAX_BACKOFF))
                backoff = min(backoff * 2, MAX_BACKOFF)
        stats.callback_failures += 1
        conv.record("callback_failed", path=path, error=problem, attempts=MAX_ATTEMPTS, retried=True)
        return False


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "0"))
    except ValueError:
        return 0.0
