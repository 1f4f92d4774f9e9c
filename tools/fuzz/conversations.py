"""The conversations the fuzz must not disturb (bystanders) and the ones it may (sacrificial), both
talking to an agent, and the checks that the bystanders came through untouched.

The customers are the harness' scripted ones (asyncio), kept on an event loop in a thread of their
own for the whole run: their sockets must keep answering the edge's keep-alive pings while the
fuzzer works synchronously in the main thread, or the edge would drop them (a false effect)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import connect

from tools.fuzz.report import FuzzReport
from tools.harness.customer import Customer
from tools.harness.system import System

T = TypeVar("T")
REACH_TIMEOUT = 60.0


class LoopThread:
    """An asyncio loop running in a daemon thread; `run` waits for a coroutine from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lexdesk-fuzz-customers", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = REACH_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class QuietCustomer(Customer):
    """The harness' customer without client-side keep-alive pings: websockets draws their payload from
    the `random` module, in this loop's thread, while Hypothesis generates in the main one; Hypothesis
    takes that for a strategy using `random`. The edge's own pings keep the socket alive."""

    async def connect(self, url: str) -> None:
        self.ws = await connect(url, max_size=None, ping_interval=None)
        self.closed.clear()
        self._reader = asyncio.create_task(self._read())


@dataclass
class Party:
    """A customer who has reached an agent, and what was true of their conversation before the fuzz."""

    role: str  # "bystander" or "sacrificial"
    customer: Customer
    edge_url: str
    conversation_id: str = ""
    talkdesk_id: str = ""
    resume_token: str = ""
    transcript: list[tuple[Any, ...]] = field(default_factory=list)
    talkdesk_messages: list[str] = field(default_factory=list)
    shown: int = 0
    others: int = 0


async def reach_agent(customer: Customer, edge_url: str, name: str) -> None:
    """The BankingBot journey up to a live agent: a balance question, then the escalation."""
    welcome = await customer.hello(edge_url, customer={"name": name, "email": f"{name.lower()}@example.com"},
                                   attributes={"page": "/fuzz"})
    assert welcome["state"] == "bot", welcome
    await customer.say("what is my balance")
    await customer.wait_text("bot", "checking or savings", timeout=REACH_TIMEOUT)
    await customer.say("Checking")
    await customer.wait_text("bot", "Checking account balance is", timeout=REACH_TIMEOUT)
    await customer.say("I want to talk to an agent")
    await customer.wait_event("agent_joined", timeout=REACH_TIMEOUT)
    await customer.wait_text("agent", "How can I help", timeout=REACH_TIMEOUT)


def _projection(transcript: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a transcript says, without what changes as frames are delivered (status, attempts)."""
    return [(m["seq"], m["frame_seq"], m["sender"], m["kind"], m["event"], m["text"], m["replayed"])
            for m in transcript]


class Parties:
    def __init__(self, system: System, loop: LoopThread) -> None:
        self.system, self.loop = system, loop
        self.bystanders: list[Party] = []
        self.sacrificial: list[Party] = []

    def setup(self, bystanders: int, sacrificial: int = 2) -> None:
        """Bring every party to an agent at once, spread over the edge nodes."""
        urls = self.system.edge_urls

        async def make(role: str, index: int) -> Party:
            party = Party(role, QuietCustomer(), urls[index % len(urls)])
            await reach_agent(party.customer, party.edge_url, f"{role.capitalize()}{index}")
            return party

        async def all_of() -> list[Party]:
            return list(await asyncio.gather(*(make("bystander", i) for i in range(bystanders)),
                                             *(make("sacrificial", i) for i in range(sacrificial))))

        parties = self.loop.run(all_of(), timeout=REACH_TIMEOUT * 2)
        for party in parties:
            assert party.customer.welcome is not None
            party.conversation_id = party.customer.welcome["conversation_id"]
            party.resume_token = party.customer.welcome["resume_token"]
            party.talkdesk_id = str(self._conversation(party)["talkdesk_conversation_id"])
            (self.bystanders if party.role == "bystander" else self.sacrificial).append(party)
        for party in self.bystanders:
            self.snapshot(party)

    def _conversation(self, party: Party) -> dict[str, Any]:
        with self.system.admin() as admin:
            response = admin.get(f"/api/conversations/{party.conversation_id}")
        response.raise_for_status()
        return dict(response.json())

    def _talkdesk_messages(self, party: Party) -> list[str]:
        with self.system.talkdesk() as talkdesk:
            response = talkdesk.get(f"/_emulator/conversations/{party.talkdesk_id}")
        response.raise_for_status()
        return [str(m["content"]) for m in response.json()["customer_messages"]]

    def snapshot(self, party: Party) -> None:
        """Remember the bystander's transcript, what Talkdesk got from them and what their socket showed."""
        party.transcript = _projection(self._conversation(party)["transcript"])
        party.talkdesk_messages = self._talkdesk_messages(party)
        party.shown, party.others = len(party.customer.shown), len(party.customer.others)

    def verify(self, report: FuzzReport) -> None:
        """After the fuzz: each bystander is exactly as it was, still live, and still talks to its agent."""
        for index, party in enumerate(self.bystanders):
            subject = f"bystander {index} ({party.conversation_id[:8]})"
            try:
                self._verify(report, subject, party)
            except (AssertionError, ConnectionError, TimeoutError, httpx.HTTPError) as exc:
                report.check(subject, "could be checked", False, f"{type(exc).__name__}: {exc}"[:500])

    def _verify(self, report: FuzzReport, subject: str, party: Party) -> None:
        customer = party.customer
        report.check(subject, "socket still open", not customer.closed.is_set(),
                     "" if not customer.closed.is_set() else f"closed: {customer.ws and customer.ws.close_code}")
        pushed = customer.shown[party.shown:] + customer.others[party.others:]
        report.check(subject, "no frame reached it during the fuzz", not pushed, str(pushed)[:300])
        conversation = self._conversation(party)
        now = _projection(conversation["transcript"])
        report.check(subject, "transcript unchanged by the fuzz", now == party.transcript,
                     f"{len(now) - len(party.transcript)} rows added: {now[len(party.transcript):]}"[:500]
                     if now != party.transcript else f"{len(now)} rows")
        report.check(subject, "state still agent_active", conversation["state"] == "agent_active",
                     str(conversation["state"]))
        failed = [m for m in conversation["transcript"] if m["status"] == "failed"]
        with self.system.admin() as admin:
            dead = admin.get("/api/dead-letters", params={"conversation_id": party.conversation_id}).json()
        report.check(subject, "nothing dead-lettered", not failed and dead["total"] == 0,
                     f"failed rows {len(failed)}, dead letters {dead['total']}")
        talkdesk_now = self._talkdesk_messages(party)
        report.check(subject, "Talkdesk got nothing from it during the fuzz", talkdesk_now == party.talkdesk_messages,
                     str(talkdesk_now[len(party.talkdesk_messages):])[:300])

        # It still works: a new message reaches the agent, whose echo comes back, and only those two
        # rows are added to the transcript.
        probe = f"bystander probe {uuid.uuid4().hex[:8]}"

        async def round_trip() -> None:
            await customer.say(probe)
            await customer.wait_text("agent", f"You said: {probe}", timeout=30)

        self.loop.run(round_trip(), timeout=40)
        after = _projection(self._conversation(party)["transcript"])
        added = [(row[2], row[5]) for row in after[len(party.transcript):]]
        report.check(subject, "a new message still gets the agent's echo",
                     after[:len(party.transcript)] == party.transcript
                     and added == [("customer", probe), ("agent", f"You said: {probe}")], str(added)[:300])
        seqs = [f["seq"] for f in customer.shown]
        report.check(subject, "frames gapless and in order", seqs == list(range(1, len(seqs) + 1)), str(seqs)[-20:])

    def disconnect(self) -> None:
        async def close_all() -> None:
            for party in (*self.bystanders, *self.sacrificial):
                if party.customer.ws is not None:
                    await party.customer.ws.close()

        self.loop.run(close_all(), timeout=20)
