"""`lexdesk bench`: the whole system as real processes on loopback, driven by scripted customers.

Phases, one after the other so each number is about one thing:
0. warm-up: one customer through bot, handoff and agent; its round trips are the cold-start figures
   (clients built on first use, pools, the Talkdesk token) and stay out of the load's percentiles.
1. edge memory: open `idle_sockets` WebSockets that each say hello (so each holds a conversation),
   reading the edge's RSS before and after; then close them. It runs before the load, so memory freed
   by earlier traffic cannot be reused and hide the per-connection cost.
2. bot: `customers` customers at once, each sending `messages` bot messages one after another.
3. handoff: each asks for an agent and waits until the agent has joined and greeted.
4. agent: each sends `messages` messages to the scripted agent, which echoes them.
5-7. fixed concurrency (tools/bench/steady.py, unless `seconds_per_phase` is 0): `in_flight` customers at
   an agent, closed loop for `seconds_per_phase`, next to the bare Celery chain (tools/bench/baseline.py)
   driven the same way on the same broker; they have their own time bounds, outside `seconds`.
CPU per process is counted over phases 2-4. Everything shares one deadline (`seconds` from the start,
start-up included); what is not done by then is reported as not answered rather than waited for, and a
single frame is never waited for longer than MESSAGE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.bench import infra
from tools.bench.client import BenchClient, Frame, FrameTimeout
from tools.bench.report import BenchReport, EdgeMemory, RoundTrips, compare
from tools.bench.stages import Trip, breakdown
from tools.bench.stats import Latency
from tools.bench.usage import DATABASE, Usage
from tools.harness.system import LEXDESK, System

AGENT_JOIN_DELAY = 0.1
# Sockets opened at once: the edge listens with asyncio's default backlog (100); a burst beyond it
# would measure SYN retransmission (1 s and more), not the edge.
BATCH = 50
FD_RESERVE = 256  # descriptors kept free for the bench's own files, HTTP clients and database
MESSAGE_TIMEOUT = 60.0  # one frame never waits longer than this, whatever the budget left
SETTLE_SECONDS = 1.0
# What the bot customers say, alternately, and what the answer contains (BankingBot, emulators/lex).
BOT_SCRIPT = (("what is my balance", "checking or savings"), ("checking", "account balance is"))
ESCALATION = ("I want to talk to an agent", "connect you with an agent")
AGENT_GREETING = "how can i help"
MAX_ERRORS_KEPT = 20
STEADY_RATE_LIMIT = 100_000  # messages per socket per window while fixed-concurrency phases run

Log = Callable[[str], None]


@dataclass
class Phase:
    """What one phase measured, filled in by many customers at once."""

    expected: int = 0
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)  # message → `accepted`
    first_send: float | None = None
    last_answer: float | None = None

    def summary(self) -> RoundTrips:
        wall = (self.last_answer - self.first_send) if self.first_send is not None and self.last_answer else 0.0
        answered = len(self.latencies)
        return RoundTrips(expected=self.expected, sent=self.sent, answered=answered, latency=Latency.of(self.latencies),
                          wall_seconds=round(wall, 3), per_second=round(answered / wall, 2) if wall > 0 else 0.0)


@dataclass
class Run:
    deadline: float  # perf_counter
    bot: Phase = field(default_factory=Phase)
    handoff: Phase = field(default_factory=Phase)
    agent: Phase = field(default_factory=Phase)
    trips: list[Trip] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    memory: EdgeMemory | None = None
    duplicates: int = 0
    gaps: int = 0
    cold: dict[str, float | None] = field(default_factory=dict)

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)

    def until(self) -> float:
        """The deadline of one wait: the run's, but never more than MESSAGE_TIMEOUT away."""
        return min(self.deadline, time.perf_counter() + MESSAGE_TIMEOUT)

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def main(customers: int = 100, messages: int = 5, idle_sockets: int = 1000, backend: str = "embedded",
         seconds: float = 300, *, in_flight: int = 16, seconds_per_phase: float = 20.0, talkdesk_latency: float = 0.0,
         log: Log | None = None) -> BenchReport:
    """Start the system on `backend` in a temporary directory, measure, stop it, return the report."""
    if customers < 1 or messages < 1 or idle_sockets < 0 or seconds <= 0:
        raise ValueError("customers and messages must be >= 1, idle_sockets >= 0, seconds > 0")
    if in_flight < 1 or seconds_per_phase < 0 or talkdesk_latency < 0:
        raise ValueError("in_flight must be >= 1, seconds_per_phase and talkdesk_latency >= 0")
    if backend not in infra.BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(infra.BACKENDS)}, not {backend!r}")
    say: Log = log or (lambda _line: None)
    from emulators.talkdesk.config import EmulatorConfig
    from shared.settings import Settings

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    loadavg = os.getloadavg()
    began = time.perf_counter()
    fd_limit = infra.raise_fd_limit()  # before the system starts, so its processes inherit it
    # Each customer sends 2*messages+1 messages; above the default per-socket rate limit the bench
    # would measure the limiter (`rate_limited` errors), so the limit is raised to fit, never lowered.
    defaults = Settings.model_fields
    rate_limit = max(int(defaults["rate_limit_messages"].default), 2 * messages + 5)
    if seconds_per_phase > 0:
        # A closed-loop customer sends as fast as it is answered; the limiter would cap the phase.
        rate_limit = max(rate_limit, STEADY_RATE_LIMIT)
    # The same for the limit over all of a conversation's sockets (the per-address ones the harness raises:
    # every bench client is 127.0.0.1).
    conversation_rate_limit = max(int(defaults["rate_limit_conversation_messages"].default), rate_limit)
    # The test harness speeds up the sweep (2 s) and retries for tests; the bench measures what ships.
    product_defaults = {"LEXDESK_SWEEP_INTERVAL": str(defaults["sweep_interval"].default),
                        "LEXDESK_RETRY_BACKOFF_BASE": str(defaults["retry_backoff_base"].default)}
    config = {"customers": customers, "messages": messages, "idle_sockets": idle_sockets, "seconds": seconds,
              "in_flight": in_flight, "seconds_per_phase": seconds_per_phase, "talkdesk_latency": talkdesk_latency,
              "rate_limit_messages": rate_limit, "fd_limit": fd_limit, **product_defaults}
    with (tempfile.TemporaryDirectory(prefix="lexdesk-bench-") as tmp,
          infra.backend(backend, Path(tmp), label="bench") as base):
        say(f"starting the system ({backend}) in {tmp}")
        system = System(Path(tmp), base.database_url, base.broker_url, worker_queues=base.worker_queues,
                        agent_join_delay=AGENT_JOIN_DELAY,
                        extra_env={**product_defaults, "LEXDESK_RATE_LIMIT_MESSAGES": str(rate_limit),
                                   "LEXDESK_RATE_LIMIT_CONVERSATION_MESSAGES": str(conversation_rate_limit)})
        _bench_emulator(system)
        with system:
            startup = time.perf_counter() - began
            say(f"system up in {startup:.1f}s")
            run = Run(deadline=began + seconds)
            measured_from = time.perf_counter()
            edge_pid = _pid(system, "edge-0")
            usage = Usage(system, base.database, base.rabbitmq)
            asyncio.run(_drive(run, usage, system.edge_urls[0], edge_pid, customers, messages, idle_sockets,
                               fd_limit, say))
            elapsed = time.perf_counter() - measured_from
            processes, commits = usage.report(), usage.database_commits
            fixed = None
            if seconds_per_phase > 0:
                from tools.bench.steady import run_fixed

                fixed = run_fixed(system, base, Path(tmp), usage, run, in_flight=in_flight,
                                  seconds=seconds_per_phase, talkdesk_latency=talkdesk_latency, say=say)
            say("reading the transcript for the per-hop breakdown")
            hops = _hops(base.database_url, run.trips)
    memory = run.memory or EdgeMemory(idle_sockets, 0, 0, 0, 0, None, 0.0, 0.0, Latency.of([]))
    duplicates, gaps = run.duplicates, run.gaps
    sent = run.bot.sent + run.handoff.sent + run.agent.sent
    product_cpu = sum(p.cpu_seconds or 0.0 for p in processes if p.product)
    database_cpu = sum(p.cpu_seconds or 0.0 for p in processes if p.group == DATABASE)
    return BenchReport(
        backend=backend, cores=os.cpu_count() or 0, python=platform.python_version(), started_at=started_at,
        loadavg_before=(round(loadavg[0], 2), round(loadavg[1], 2), round(loadavg[2], 2)),
        config=config, startup_seconds=round(startup, 2), elapsed_seconds=round(elapsed, 2),
        bot=run.bot.summary(), handoff=run.handoff.summary(), agent=run.agent.summary(),
        accepted=Latency.of(run.bot.accepted + run.handoff.accepted + run.agent.accepted), cold_start=run.cold,
        agent_reply_delay_seconds=EmulatorConfig().agent_reply_delay,
        agent_join_delay_seconds=AGENT_JOIN_DELAY, edge_memory=memory, load_seconds=round(usage.load_seconds, 2),
        cpu_ms_per_message=round(1000 * product_cpu / sent, 2) if sent else None,
        database_cpu_ms_per_message=round(1000 * database_cpu / sent, 2) if sent and base.database else None,
        db_commits_per_message=round(commits / sent, 1) if sent and commits is not None else None,
        processes=processes, hops=hops,
        duplicates=duplicates, gaps=gaps, error_count=run.error_count, errors=run.errors,
        chain=fixed.chain if fixed else None, steady=fixed.steady if fixed else None,
        comparison=compare(fixed.steady, fixed.chain, backend=backend, talkdesk_concurrency=fixed.talkdesk_concurrency)
        if fixed and fixed.steady else None,
    )


# -- the phases -----------------------------------------------------------------------------------------


async def _drive(run: Run, usage: Usage, url: str, edge_pid: int, customers: int, messages: int,
                 idle_sockets: int, fd_limit: int, say: Log) -> None:
    say("warm-up: one customer through the whole journey")
    run.cold = await _warmup(run, url)
    run.memory = await _edge_memory(run, url, edge_pid, idle_sockets, fd_limit, say)
    run.bot.expected = run.agent.expected = customers * messages
    run.handoff.expected = customers
    say(f"connecting {customers} customers")
    clients = await _open(run, url, customers, "customer", [])
    try:
        await asyncio.to_thread(usage.start)
        say(f"bot phase: {customers} customers x {messages} messages")
        await _phase(run, clients, lambda client: _bot(run, client, messages, run.bot, run.trips))
        say("handoff phase: every customer asks for an agent")
        ready: list[BenchClient] = []
        await _phase(run, clients, lambda client: _handoff(run, client, run.handoff, ready))
        say(f"agent phase: {len(ready)} customers x {messages} messages")
        await _phase(run, ready, lambda client: _agent(run, client, messages, run.agent, run.trips))
        await asyncio.to_thread(usage.stop)
    finally:
        run.duplicates = sum(c.duplicates for c in clients)
        run.gaps = sum(c.gaps for c in clients)
        await _close(clients)


async def _warmup(run: Run, url: str) -> dict[str, float | None]:
    """One customer through bot, handoff and agent before anything is measured. The first round trips
    after start-up pay one-off costs (clients built on first use, connection pools, the Talkdesk OAuth
    token); they are reported as cold-start figures instead of landing in the load's tail."""
    client = BenchClient("warmup")
    bot, handoff, agent = Phase(), Phase(), Phase()
    scratch: list[Trip] = []
    try:
        await client.hello(url, max(1.0, min(MESSAGE_TIMEOUT, run.left())))
        await _bot(run, client, 1, bot, scratch)
        ready: list[BenchClient] = []
        await _handoff(run, client, handoff, ready)
        if ready:
            await _agent(run, client, 1, agent, scratch)
    except (OSError, TimeoutError, ConnectionError, FrameTimeout) as exc:
        run.error(f"warm-up customer failed: {exc!r}")
    finally:
        await client.close()

    def first_ms(phase: Phase) -> float | None:
        return round(phase.latencies[0] * 1000, 1) if phase.latencies else None

    return {"bot_ms": first_ms(bot), "handoff_ms": first_ms(handoff), "agent_ms": first_ms(agent)}


async def _phase(run: Run, clients: Sequence[BenchClient],
                 work: Callable[[BenchClient], Coroutine[Any, Any, None]]) -> None:
    """Run `work` for every client at once; nothing outlives the deadline (plus a little to unwind)."""
    if not clients or run.left() <= 0:
        return
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(work(client)) for client in clients]
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, run.left()) + 5)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            run.error(f"customer task failed: {task.exception()!r}")


async def _exchange(run: Run, client: BenchClient, phase: Phase, message_id: str, text: str,
                    answer: Callable[[Frame], bool]) -> tuple[float, float, Frame] | None:
    """Send one message; wait for its `accepted`, then for the frame `answer` picks. Returns the send
    time (wall clock), the receipt time of the answer (wall clock) and the answer, or None if the edge
    refused the message (the error is recorded)."""
    others_from, shown_from = len(client.others), len(client.shown)
    sent = await client.send_message(message_id, text)
    phase.sent += 1
    phase.first_send = sent.at if phase.first_send is None else min(phase.first_send, sent.at)
    reply = await client.wait_other(lambda f: f.get("id") == message_id and f["type"] in ("accepted", "error"),
                                    others_from, run.until())
    if reply.frame["type"] == "error":
        run.error(f"{client.name}: message {message_id} refused: {reply.frame}")
        return None
    phase.accepted.append(reply.at - sent.at)
    got = await client.wait_shown(answer, shown_from, run.until())
    phase.latencies.append(got.at - sent.at)
    phase.last_answer = got.at if phase.last_answer is None else max(phase.last_answer, got.at)
    return sent.wall, got.wall, got.frame


def _bot_says(contains: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "message" and f.get("from") == "bot" and contains in str(f.get("text", "")).lower()


def _agent_says(text: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "message" and f.get("from") == "agent" and f.get("text") == text


async def _bot(run: Run, client: BenchClient, messages: int, phase: Phase, trips: list[Trip]) -> None:
    assert client.welcome is not None
    for index in range(messages):
        if run.left() <= 0:
            return
        text, expect = BOT_SCRIPT[index % len(BOT_SCRIPT)]
        message_id = f"{client.name}-bot-{index}"
        try:
            done = await _exchange(run, client, phase, message_id, text, _bot_says(expect))
        except (FrameTimeout, ConnectionError) as exc:
            # A later answer could be taken for this one's, so this customer stops here.
            run.error(f"{client.name}: no bot answer to {message_id} ({type(exc).__name__})")
            return
        if done is not None:
            trips.append(Trip(client.welcome["conversation_id"], message_id, expect, "bot", done[0], done[1]))


async def _handoff(run: Run, client: BenchClient, phase: Phase, ready: list[BenchClient]) -> None:
    """Escalate; the latency is up to `agent_joined`. The customer is ready for the agent phase once
    the scripted agent has greeted: its echoes queue behind the greeting, which waits the reply delay."""
    if run.left() <= 0:
        return
    message_id = f"{client.name}-escalate"
    shown_from = len(client.shown)
    joined = lambda f: f["type"] == "event" and f.get("event") in ("agent_joined", "handoff_failed")  # noqa: E731
    try:
        done = await _exchange(run, client, phase, message_id, ESCALATION[0], joined)
        if done is None:
            return
        if done[2].get("event") != "agent_joined":
            run.error(f"{client.name}: handoff failed: {done[2]}")
            return
        await client.wait_shown(_bot_says(ESCALATION[1]), shown_from, run.until())
        await client.wait_shown(lambda f: f["type"] == "message" and f.get("from") == "agent"
                                and AGENT_GREETING in str(f.get("text", "")).lower(), shown_from, run.until())
    except (FrameTimeout, ConnectionError) as exc:
        run.error(f"{client.name}: handoff incomplete ({type(exc).__name__})")
        return
    ready.append(client)


async def _agent(run: Run, client: BenchClient, messages: int, phase: Phase, trips: list[Trip]) -> None:
    for index in range(messages):
        if run.left() <= 0:
            return
        trip = await agent_trip(run, client, phase, f"{client.name}-agent-{index}",
                                f"{client.name} message {index} for the agent")
        if trip is None:
            return
        trips.append(trip)


async def agent_trip(run: Run, client: BenchClient, phase: Phase, message_id: str, text: str) -> Trip | None:
    """Say `text` to the agent and wait for the scripted echo; None (and the error noted) if it never
    came: a later echo could be taken for this one's, so that customer stops."""
    assert client.welcome is not None
    echo = f"You said: {text}"
    try:
        done = await _exchange(run, client, phase, message_id, text, _agent_says(echo))
    except (FrameTimeout, ConnectionError) as exc:
        run.error(f"{client.name}: no agent echo of {message_id} ({type(exc).__name__})")
        return None
    if done is None:
        return None
    return Trip(client.welcome["conversation_id"], message_id, echo, "agent", done[0], done[1])


# -- sockets and memory ---------------------------------------------------------------------------------


async def _open(run: Run, url: str, count: int, prefix: str, welcome_times: list[float]) -> list[BenchClient]:
    """Open `count` sockets that each say hello, BATCH at a time; returns those that got `welcome`."""
    opened: list[BenchClient] = []
    for start in range(0, count, BATCH):
        if run.left() <= 0:
            run.error(f"{prefix}: time budget spent after opening {len(opened)} of {count} sockets")
            break
        batch = [BenchClient(f"{prefix}-{index}") for index in range(start, min(count, start + BATCH))]
        timeout = max(1.0, min(MESSAGE_TIMEOUT, run.left()))
        results = await asyncio.gather(*(client.hello(url, timeout) for client in batch), return_exceptions=True)
        for client, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                run.error(f"{client.name}: hello failed: {result!r}")
                await client.close()
            else:
                welcome_times.append(result)
                opened.append(client)
    return opened


async def _close(clients: Sequence[BenchClient]) -> None:
    for start in range(0, len(clients), 4 * BATCH):
        await asyncio.gather(*(client.close() for client in clients[start:start + 4 * BATCH]))


async def _edge_memory(run: Run, url: str, edge_pid: int, requested: int, fd_limit: int, say: Log) -> EdgeMemory:
    """RSS of the edge before and after `requested` idle sockets with a conversation each."""
    if requested == 0:
        rss = infra.rss_kib(edge_pid) or 0
        return EdgeMemory(0, 0, 0, rss, rss, None, 0.0, 0.0, Latency.of([]))
    # Each socket costs the bench one descriptor and the edge one (it inherited our limit).
    room = max(0, fd_limit - infra.open_fds() - FD_RESERVE)
    warmup = min(BATCH, requested)
    target = min(requested, max(0, room - warmup))
    if target < requested:
        run.error(f"RLIMIT_NOFILE={fd_limit} leaves room for {target} of {requested} idle sockets")
    # The warm-up batch stays open through the measurement: it makes the edge start its I/O threads
    # and allocate its per-process structures, which belong to the baseline, not to each socket.
    say(f"edge memory: warm-up {warmup} sockets")
    warm = await _open(run, url, warmup, "warm", [])
    await asyncio.sleep(SETTLE_SECONDS)
    before = infra.rss_kib(edge_pid) or 0
    say(f"edge memory: opening {target} idle sockets (RSS before {before:,} KiB)")
    welcome_times: list[float] = []
    started = time.perf_counter()
    idle = await _open(run, url, target, "idle", welcome_times)
    open_seconds = time.perf_counter() - started
    await asyncio.sleep(SETTLE_SECONDS)  # let the edge finish what the last hellos started
    after = infra.rss_kib(edge_pid) or 0
    say(f"edge memory: {len(idle)} open, RSS after {after:,} KiB; closing them")
    await _close([*idle, *warm])
    # The edge detaches each closed socket in the database; let that finish before the load phases.
    await asyncio.sleep(2 * SETTLE_SECONDS)
    per_connection = round((after - before) / len(idle), 2) if idle else None
    return EdgeMemory(requested=requested, opened=len(idle), warmup=len(warm), rss_before_kib=before,
                      rss_after_kib=after, kib_per_connection=per_connection, open_seconds=round(open_seconds, 2),
                      connections_per_second=round(len(idle) / open_seconds, 1) if open_seconds > 0 else 0.0,
                      welcome=Latency.of(welcome_times))


def _bench_emulator(system: System) -> None:
    """Run the Talkdesk emulator through tools/bench/emulator.py: the same options, plus a route to change
    the scripted agent's reply delay at run time (the fixed-concurrency phase sets it to 0)."""
    proc = system.procs["talkdesk"]
    command = [*LEXDESK, "emulate", "talkdesk"]
    if proc.argv[:len(command)] != command:
        raise RuntimeError(f"the harness starts the Talkdesk emulator as {proc.argv[:len(command) + 2]}, "
                           f"not {command}: tools/bench/runner.py needs updating")
    proc.argv = [sys.executable, "-m", "tools.bench.emulator", *proc.argv[len(command):]]


def _pid(system: System, name: str) -> int:
    popen = system.procs[name].popen
    assert popen is not None, f"{name} is not running"
    return popen.pid


def _hops(database_url: str, trips: Sequence[Trip]) -> dict[str, dict[str, Latency]]:
    from shared.db import get_engine

    try:
        return breakdown(database_url, trips)
    finally:
        # Close the bench's own pool before the database is dropped (postgres backend).
        with contextlib.suppress(Exception):
            get_engine(database_url).dispose()
