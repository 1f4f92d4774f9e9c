"""The emulated Talkdesk agent: joins, greets, echoes, closes, and relays what a person does at /console.

Everything the agent does reaches lexdesk as an HTTP callback. Per conversation, callbacks go out strictly
in order through one queue and one worker task (started when there is work, ended when there is none).
Each finished job saves its conversation; with a state file, `resume()` re-queues at start-up what the
previous process left undone (the join, queued messages, a pending close): at least once, since a
callback that went out just before a crash is sent again, with the same message id. Typing is the one
exception: best effort, beside the queue (typing_lane.py).

Presence is honest: someone joins a conversation only when someone takes it. With the scripted agent on,
that is the scripted agent, `agent_join_delay` after the conversation is created; with it off, nobody
joins until a person takes the conversation at /console, and then under that person's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from .callbacks import CallbackSender
from .config import EmulatorConfig
from .state import AgentMessage, Conversation, Store, new_id, now_iso
from .typing_lane import TypingLane

log = logging.getLogger(__name__)

CLOSE_COMMANDS = frozenset({"close", "/close"})
GOODBYE = "Thanks for chatting with us. Goodbye!"
CONSOLE_AGENT_NAME = "Agent"
"""The name a person at /console joins under when the console does not say one."""


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
        self._sender = CallbackSender(config, store.stats)
        self._typing = TypingLane(self._sender, store)

    @property
    def enabled(self) -> bool:
        return bool(self._config.callback_url)

    # lifecycle

    async def start(self) -> None:
        await self._sender.start()

    async def stop(self) -> None:
        await self._typing.stop()
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queues.clear()
        await self._sender.stop()

    # what happens to a conversation

    def conversation_created(self, conv: Conversation) -> None:
        """Only the scripted agent takes a conversation by itself; without it the conversation waits
        for a person at /console (`take_over`)."""
        if not (self.enabled and self._config.scripted_agent):
            return
        conv.agent_name = self._config.agent_name
        self._enqueue(conv.id, Job("join", delay=self._config.agent_join_delay))
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
        self._typing.cancel(conversation_id)
        task = self._workers.pop(conversation_id, None)
        if task is not None:
            task.cancel()
        self._queues.pop(conversation_id, None)

    def resume(self) -> None:
        """Re-queue, in their original order, the jobs of conversations read back from a state file.

        A job is saved as done only once it is (`_run`), so what is not marked done here was not.
        """
        for conv in list(self._store.conversations.values()):
            if conv.agent_name is None and conv.agent_joined_at is not None:
                conv.agent_name = self._config.agent_name  # joined in a file written before names were kept
            if conv.status == "ended":
                self._drop_queued(conv)
                if self.enabled and conv.callback_in_flight == "close":
                    self._enqueue(conv.id, Job("close", resend=True))
                continue
            if not self.enabled:
                continue
            if conv.agent_joined_at is None:
                if conv.agent_name is None and self._config.scripted_agent:
                    conv.agent_name = self._config.agent_name  # the scripted agent's join, from such a file
                if conv.agent_name is not None:
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

    def take_over(self, conv: Conversation, agent_name: str | None = None) -> None:
        """A person at /console takes the conversation: the scripted agent stops answering it. If nobody
        has joined it yet (scripted agent off), the person joins now, under `agent_name`."""
        if not conv.taken_over:
            conv.taken_over = True
            conv.record("taken_over", agent_name=agent_name)
        if conv.agent_name is not None or conv.status == "ended" or conv.closing:
            return
        conv.agent_name = agent_name or CONSOLE_AGENT_NAME
        if self.enabled:
            self._enqueue(conv.id, Job("join"))
        else:  # nobody to tell: the join is in effect at once
            conv.agent_joined_at = now_iso()
            conv.record("agent_joined", agent_name=conv.agent_name, callback=False)

    def console_message(self, conv: Conversation, content: str, agent_name: str | None = None) -> AgentMessage:
        self.take_over(conv, agent_name)
        return self._enqueue_message(conv, content, "console")

    def console_typing(self, conv: Conversation, active: bool) -> None:
        """The person at /console started or stopped typing (the console debounces); best effort."""
        conv.record("agent_typing", active=active, by="console")
        if self.enabled:
            self._typing.send(conv, active)

    def console_close(self, conv: Conversation) -> None:
        conv.record("close_requested", by="console")
        self._typing.cancel(conv.id)
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
        # A message ends the agent's typing for lexdesk: a typing callback still going out would only
        # arrive stale, so it goes.
        self._typing.cancel(conv.id)
        message = AgentMessage(
            seq=conv.next_seq(),
            id=new_id(),
            content=content,
            author_name=conv.agent_name or self._config.agent_name,
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
        deliver = self._sender.deliver
        joiner = {"agent_name": conv.agent_name or self._config.agent_name}
        if job.resend:
            if job.kind == "join":
                await deliver(conv, f"{path}/agent-joined", joiner)
            else:
                await deliver(conv, f"{path}/close", {"reason": job.reason})
            conv.callback_in_flight = None
            return
        if conv.status == "ended" or (job.scripted and conv.taken_over):
            if job.message is not None:
                job.message.delivery = "dropped"
            if job.kind == "close" and conv.status == "open":
                conv.closing = False
            return
        if job.kind == "join":
            if conv.agent_joined_at is not None:
                return  # a conversation is joined once
            conv.agent_joined_at = now_iso()
            conv.record("agent_joined", agent_name=joiner["agent_name"])
            conv.callback_in_flight = "join"
            await deliver(conv, f"{path}/agent-joined", joiner)
            conv.callback_in_flight = None
        elif job.kind == "message" and job.message is not None:
            message = job.message
            message.created_at = now_iso()
            conv.record("agent_message", id=message.id, source=message.source)
            delivered = await deliver(conv, f"{path}/messages", message.payload())
            message.delivery = "delivered" if delivered else "failed"
        elif job.kind == "close":
            conv.end("agent")
            conv.callback_in_flight = "close"
            await deliver(conv, f"{path}/close", {"reason": job.reason})
            conv.callback_in_flight = None
