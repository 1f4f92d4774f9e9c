"""One customer's conversation under chaos: bot turns (a balance question), the escalation, the agent's
join, K messages to the agent (each echoed "You said: ..." by the emulator's scripted agent, which is how
we know the agent side got it), then "close", which makes the agent end the conversation.

Every wait is bounded by the step timeouts and the run's deadline; a journey that cannot go on records
why and stops, leaving its client connected so that anything arriving late is still seen and counted.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tools.chaos.client import Frame, RobustCustomer, Sent
from tools.chaos.plan import ChaosPlan

BOT_TURNS = (("what is my balance", "checking or savings"), ("Checking", "balance is"))
ESCALATE = ("I want to talk to an agent", "connect you with an agent")
GREETING = "How can I help"
CLOSE = "close"
MAX_ESCALATIONS = 3


def agent_text(label: str, k: int) -> str:
    return f"msg {label}-{k}"


def echo_of(text: str) -> str:
    return f"You said: {text}"


@dataclass
class Said:
    """A customer message the journey meant to send, and what became of it."""

    id: str
    text: str
    phase: str  # bot | escalate | agent | close
    k: int | None = None  # position among the agent messages
    expect: str | None = None  # what on screen proves the other side got it
    answered_at: float | None = None


@dataclass
class JourneyRecord:
    index: int
    label: str
    email: str
    phase: str = "waiting"
    failure: str | None = None
    started_at: float | None = None
    agent_joined_at: float | None = None
    finished_at: float | None = None
    handoff_failures: int = 0
    handoff_failed_at: float | None = None
    greeted: bool = False
    said: list[Said] = field(default_factory=list)


class Journey:
    def __init__(self, index: int, plan: ChaosPlan, edge_urls: list[str], deadline: float,
                 on_progress: Callable[[], None]) -> None:
        label = f"c{index:04d}"
        spread = plan.faults.window * plan.arrivals / max(1, plan.conversations)
        self.record = JourneyRecord(index, label, f"{label}@chaos.example")
        self.plan = plan
        self.deadline = deadline
        self.rng = random.Random(f"{plan.seed}-{index}")
        self.start_delay = spread * (index + self.rng.random())
        self._slot = asyncio.Semaphore(1)
        self._holding = False
        self.customer = RobustCustomer(label, edge_urls, index, self.rng,
                                       {"customer": {"name": f"Chaos {label}", "email": self.record.email},
                                        "attributes": {"page": "/chaos"}}, on_progress)

    @property
    def label(self) -> str:
        return self.record.label

    def _left(self, cap: float | None = None) -> float:
        left = self.deadline - time.monotonic()
        return max(0.0, left if cap is None else min(cap, left))

    def _fail(self, why: str) -> None:
        self.record.failure = why
        self.record.phase = "failed"

    async def run(self, slot: asyncio.Semaphore) -> None:
        """The whole script. The slot bounds how many conversations are active at once; it is let go
        while the journey only waits on an operator (a replay), and before the final wait."""
        self._slot = slot
        await asyncio.sleep(self.start_delay)
        await self._take_slot()
        try:
            self.record.started_at = time.monotonic()
            if not await self._active_part():
                return
        finally:
            self._leave_slot()
        await self._finish()

    async def _take_slot(self) -> None:
        await self._slot.acquire()
        self._holding = True

    def _leave_slot(self) -> None:
        if self._holding:
            self._holding = False
            self._slot.release()

    async def _active_part(self) -> bool:
        record, customer = self.record, self.customer
        record.phase = "hello"
        if not await customer.start(self._left(self.plan.step_timeout)):
            self._fail(f"no welcome ({customer.fatal or 'timeout'})")
            return False
        record.phase = "bot"
        for n, (text, expect) in enumerate(BOT_TURNS, start=1):
            if not await self._say_and_see(Said(f"{self.label}-b{n}", text, "bot", expect=expect)):
                return False
        if not await self._escalate():
            return False
        record.phase = "agent"
        greeting = await customer.wait(lambda: customer.find(_agent_says(GREETING)), self._left(self.plan.step_timeout))
        record.greeted = greeting is not None
        for k in range(1, self.plan.exchanges + 1):
            await asyncio.sleep(self.rng.uniform(*self.plan.think))  # the customer types
            said = Said(f"{self.label}-m{k}", agent_text(self.label, k), "agent", k=k,
                        expect=echo_of(agent_text(self.label, k)))
            if not await self._send(said):
                return False
            if self.rng.random() < 0.5:  # half the time wait for the answer; otherwise type on (a burst)
                await customer.wait(lambda s=said: self._answered(s), self._left(self.plan.echo_timeout))
        return True

    async def _finish(self) -> None:
        record, customer = self.record, self.customer
        record.phase = "final_wait"
        agent_messages = [s for s in record.said if s.phase == "agent"]
        await customer.wait(lambda: all(self._answered(s) for s in agent_messages), self._left())
        if not all(self._answered(s) for s in agent_messages):
            self._fail("agent never echoed " + ", ".join(s.text for s in agent_messages if not self._answered(s)))
            return
        record.phase = "closing"
        if not await self._send(Said(f"{self.label}-close", CLOSE, "close", expect="conversation_ended")):
            return
        if await customer.wait(lambda: customer.ended, self._left()) is None:
            self._fail("conversation_ended never shown")
            return
        record.phase = "done"
        record.finished_at = time.monotonic()

    async def _escalate(self) -> bool:
        record, customer = self.record, self.customer
        record.phase = "handoff"
        for attempt in range(1, MAX_ESCALATIONS + 1):
            mark = len(customer.shown)
            said = Said(f"{self.label}-e{attempt}", ESCALATE[0], "escalate", expect=ESCALATE[1])
            if not await self._say_and_see(said):
                return False
            outcome = await customer.wait(
                lambda m=mark: customer.find(lambda f: f.get("event") in ("agent_joined", "handoff_failed"), m),
                self._left(self.plan.step_timeout))
            if outcome is None:
                self._fail("neither agent_joined nor handoff_failed after escalating")
                return False
            if outcome.frame["event"] == "agent_joined":
                record.agent_joined_at = outcome.at
                return True
            record.handoff_failures += 1
            record.handoff_failed_at = outcome.at
            if self.plan.ask_again_after_failed_handoff:
                await asyncio.sleep(1.0)  # the customer reads "could not reach an agent", then asks again
                continue
            return await self._wait_for_replayed_handoff()
        self._fail(f"handoff failed {MAX_ESCALATIONS} times")
        return False

    async def _wait_for_replayed_handoff(self) -> bool:
        """The customer stays while an operator replays the failed handoff (the dead letter)."""
        record, customer = self.record, self.customer
        record.phase = "handoff_failed"
        mark = len(customer.shown)
        self._leave_slot()
        joined = await customer.wait(lambda: customer.find(lambda f: f.get("event") == "agent_joined", mark),
                                     self._left())
        await self._take_slot()
        if joined is None:
            self._fail("handoff failed and no agent joined afterwards (was it replayed?)")
            return False
        record.agent_joined_at = joined.at
        record.phase = "handoff"
        return True

    async def _send(self, said: Said) -> bool:
        if said.phase != "agent":  # agent messages have their typing time in the loop
            await asyncio.sleep(self.rng.uniform(*self.plan.think))
        self.record.said.append(said)
        sent = await self.customer.say(said.id, said.text, self._left())
        if sent.accepted_at is None:
            self._fail(f"{said.text!r} not accepted ({sent.refused or 'timeout'}, {sent.sends} sends)")
            return False
        return True

    async def _say_and_see(self, said: Said) -> bool:
        """A bot turn: send, then wait for the bot's answer (shown after we first sent)."""
        mark = len(self.customer.shown)
        if not await self._send(said):
            return False
        assert said.expect is not None
        expect = said.expect.lower()
        seen = await self.customer.wait(
            lambda: self.customer.find(lambda f: f.get("from") == "bot" and expect in f.get("text", "").lower(), mark),
            self._left(self.plan.step_timeout))
        if seen is None:
            self._fail(f"no bot answer to {said.text!r}")
            return False
        said.answered_at = seen.at
        return True

    def _answered(self, said: Said) -> bool:
        if said.answered_at is None and said.expect is not None:
            shown = self.customer.find(_agent_says(said.expect, exact=True))
            if shown is not None:
                said.answered_at = shown.at
        return said.answered_at is not None

    def sent(self, said: Said) -> Sent | None:
        return self.customer.sent.get(said.id)


def _agent_says(text: str, exact: bool = False) -> Callable[[Frame], bool]:
    def match(frame: Frame) -> bool:
        if frame.get("type") != "message" or frame.get("from") != "agent":
            return False
        shown = str(frame.get("text", ""))
        return shown == text if exact else text.lower() in shown.lower()

    return match
