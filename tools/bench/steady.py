"""The fixed-concurrency phases of `lexdesk bench` (after the load phases of runner.py, same system):

5. `in_flight` new customers each ask for an agent and wait for the greeting; then the scripted agent's
   reply delay is set to 0 (so the vendor's think time is not what is measured) and `talkdesk_latency`
   is injected into every Talkdesk API call (the emulator's /_emulator/faults `latency`); one warm-up
   round trip each.
6. the bare Celery chain (tools/bench/baseline.py): 4 task hops and a reply on the same broker (the
   run's vhost; on the embedded backend a sibling SQLite broker file), `in_flight` round trips closed
   loop for `seconds`. lexdesk is idle meanwhile, which also lets PostgreSQL's statistics catch up
   with the hand-offs before the commit counter is read.
7. lexdesk's agent round trips: each customer says a message, waits for the agent's echo, says the next,
   for `seconds` (closed loop, as the chain). The answers in flight at the end are waited for (bounded).
   Commits are pg_stat_database.xact_commit of the run's database, read before the window and
   PG_STATS_LAG after it, so they include background work (sweep, periodic jobs, acks, pings).

Each phase is bounded on its own (`seconds` plus DRAIN_SECONDS, start-up bounded too), outside the load
phases' budget, so a slow load phase cannot eat them and they cannot make it miss its deadline.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tools.bench import infra
from tools.bench.baseline import run_chain
from tools.bench.client import BenchClient
from tools.bench.emulator import AGENT_ROUTE
from tools.bench.report import ChainReport, SteadyReport
from tools.bench.runner import (
    MESSAGE_TIMEOUT,
    Phase,
    Run,
    _close,
    _handoff,
    _open,
    _phase,
    agent_trip,
)
from tools.bench.stages import Trip, breakdown
from tools.bench.stats import Latency
from tools.bench.usage import DATABASE, PG_STATS_LAG, PRODUCT, Usage
from tools.harness.backends import Backend
from tools.harness.system import System

DRAIN_SECONDS = 30.0  # after the window, the longest the answers still in flight are waited for
MIN_IDLE_SECONDS = 5.0  # the shortest idle stretch a background commit rate is taken from
SETUP_SECONDS = 2 * MESSAGE_TIMEOUT  # opening the customers, their hand-offs and the warm-up round trip

Log = Callable[[str], None]


@dataclass
class Fixed:
    steady: SteadyReport | None
    chain: ChainReport | None
    talkdesk_concurrency: int


def talkdesk_concurrency(system: System) -> int:
    """Threads consuming the `talkdesk` queue: the `--concurrency` (or `-c`) of every worker whose `-Q`
    includes it (tools/harness/system.py sets them; one process per queue on postgres, one for all on
    the embedded backend, where the other queues share those threads)."""
    total = 0
    for name, proc in system.procs.items():
        argv = proc.argv
        if not name.startswith("worker-") or "-Q" not in argv:
            continue
        if "talkdesk" not in argv[argv.index("-Q") + 1].split(","):
            continue
        flag = "--concurrency" if "--concurrency" in argv else "-c" if "-c" in argv else None
        total += int(argv[argv.index(flag) + 1]) if flag else (os.cpu_count() or 1)  # Celery's default
    return total


def chain_broker_url(base: Backend, workdir: Path) -> str:
    """The chain's broker: the run's vhost on RabbitMQ; a sibling file of the embedded broker's (the same
    transport, without lexdesk's workers polling the same tables)."""
    if base.rabbitmq:
        return base.broker_url
    return f"sqla+sqlite:///{workdir / 'chain-broker.sqlite'}"


def run_fixed(system: System, base: Backend, workdir: Path, usage: Usage, run: Run, *, in_flight: int,
              seconds: float, talkdesk_latency: float, say: Log) -> Fixed:
    """Phases 5-7. Errors of lexdesk's customers go into `run` (they make the report incomplete)."""
    concurrency = talkdesk_concurrency(system)
    steady, chain = asyncio.run(_fixed(system, base, workdir, usage, run, in_flight, seconds, talkdesk_latency,
                                       say))
    return Fixed(steady, chain, concurrency)


async def _fixed(system: System, base: Backend, workdir: Path, usage: Usage, run: Run, in_flight: int,
                 seconds: float, latency: float, say: Log) -> tuple[SteadyReport | None, ChainReport | None]:
    fixed = Run(deadline=time.perf_counter() + SETUP_SECONDS)
    url = system.edge_urls[0]
    say(f"fixed concurrency: {in_flight} customers ask for an agent")
    clients = await _open(fixed, url, in_flight, "steady", [])
    steady: SteadyReport | None = None
    chain: ChainReport | None = None
    trips: list[Trip] = []
    try:
        ready: list[BenchClient] = []
        await _phase(fixed, clients, lambda client: _handoff(fixed, client, Phase(), ready))
        default_delay = await _knobs(system.talkdesk_url, reply_delay=0.0, latency=latency)
        try:
            say(f"fixed concurrency: agent reply delay 0, Talkdesk latency {latency:g}s; one warm-up round trip each")
            await _phase(fixed, ready, lambda client: _customer(fixed, client, Phase(), [], "warm", 0.0))
            say(f"bare Celery chain: {in_flight} in flight for {seconds:g}s on {chain_broker_url(base, workdir)}")
            # lexdesk is idle while the chain runs: once the statistics have caught up with the warm-up, the
            # commits counted until the window starts are its background work (sweep, periodic jobs, pings).
            idle_probe = asyncio.create_task(_commits_later(base.database, PG_STATS_LAG))
            chain = await asyncio.to_thread(run_chain, chain_broker_url(base, workdir), workdir,
                                            in_flight=in_flight, seconds=seconds, log=say)
            before = await _commits_later(base.database, 0.0)
            idle = idle_probe.result() if idle_probe.done() else None
            idle_probe.cancel()
            say(f"lexdesk agent round trips: {len(ready)} customers in flight for {seconds:g}s")
            steady = await _steady(usage, fixed, ready, trips, seconds, latency)
        finally:
            await _knobs(system.talkdesk_url, reply_delay=default_delay, latency=0.0)
        if base.database and steady is not None:
            say(f"waiting {PG_STATS_LAG:g}s for PostgreSQL's statistics")
            after = await _commits_later(base.database, PG_STATS_LAG)
            _count_commits(steady, idle, before, after)
        if steady is not None:
            steady.hops = (await asyncio.to_thread(breakdown, system.database_url, trips)).get("agent", {})
    finally:
        if steady is not None:
            steady.duplicates = sum(c.duplicates for c in clients)
            steady.gaps = sum(c.gaps for c in clients)
        await _close(clients)
        run.error_count += fixed.error_count
        run.errors.extend(fixed.errors[:max(0, 20 - len(run.errors))])
    return steady, chain


Reading = tuple[float, int]  # (perf_counter, xact_commit)


async def _commits_later(database: str | None, delay: float) -> Reading | None:
    """pg_stat_database.xact_commit of `database` after `delay` seconds (None without PostgreSQL)."""
    if not database:
        return None
    await asyncio.sleep(delay)
    value = await asyncio.to_thread(infra.postgres_commits, database)
    return None if value is None else (time.perf_counter(), value)


def _count_commits(steady: SteadyReport, idle: Reading | None, before: Reading | None,
                   after: Reading | None) -> None:
    if before is None or after is None:
        return
    steady.db_commits = after[1] - before[1]
    answered = steady.trips.answered
    steady.db_commits_per_message = round(steady.db_commits / answered, 1) if answered else None
    if idle is not None and before[0] - idle[0] >= MIN_IDLE_SECONDS:
        rate = (before[1] - idle[1]) / (before[0] - idle[0])
        steady.background_commits_per_second = round(rate, 2)
        if answered:
            net = steady.db_commits - rate * (after[0] - before[0])
            steady.db_commits_per_message_net = round(net / answered, 1)


async def _steady(usage: Usage, fixed: Run, ready: list[BenchClient], trips: list[Trip], seconds: float,
                  latency: float) -> SteadyReport:
    cpu_before, machine_before = usage.cpu_by_pid(), infra.machine_cpu()
    phase = Phase()
    started = time.perf_counter()
    fixed.deadline = started + seconds + DRAIN_SECONDS
    window_end = started + seconds
    await _phase(fixed, ready, lambda client: _customer(fixed, client, phase, trips, "steady", window_end))
    wall = time.perf_counter() - started
    cpu = _cpu_since(usage, cpu_before)
    machine_busy, loadavg = infra.busy_percent(machine_before, infra.machine_cpu()), round(os.getloadavg()[0], 2)
    phase.expected = phase.sent
    answered = len(phase.latencies)
    product = sum(value for name, value in cpu.items() if name.startswith(PRODUCT))
    database = cpu.get(DATABASE)
    return SteadyReport(
        in_flight=len(ready), seconds=seconds, agent_reply_delay_seconds=0.0, talkdesk_latency_seconds=latency,
        trips=phase.summary(), accepted=Latency.of(phase.accepted), db_commits=None, db_commits_per_message=None,
        stats_lag_seconds=PG_STATS_LAG if usage.database else 0.0,
        cpu_ms_per_message=round(1000 * product / answered, 2) if answered else None,
        database_cpu_ms_per_message=round(1000 * database / answered, 2) if answered and database is not None else None,
        cpu_percent={name: round(100 * value / wall, 1) for name, value in cpu.items()} if wall > 0 else {},
        hops={}, machine_busy_percent=machine_busy, loadavg_after=loadavg)


async def _customer(run: Run, client: BenchClient, phase: Phase, trips: list[Trip], label: str,
                    window_end: float) -> None:
    """Closed loop: say, wait for the echo, say the next, until `window_end` (at least once)."""
    index = 0
    while index == 0 or time.perf_counter() < window_end:
        if run.left() <= 0:
            return
        trip = await agent_trip(run, client, phase, f"{client.name}-{label}-{index}",
                                f"{client.name} {label} message {index}")
        if trip is None:
            return
        trips.append(trip)
        index += 1


async def _knobs(talkdesk_url: str, *, reply_delay: float, latency: float) -> float:
    """Set the emulator's injected latency (its faults knob) and the scripted agent's reply delay (the
    bench's route, tools/bench/emulator.py); returns the reply delay it had."""
    async with httpx.AsyncClient(base_url=talkdesk_url, timeout=10) as client:
        faults = await client.put("/_emulator/faults", json={"latency": latency})
        faults.raise_for_status()
        agent = await client.put(AGENT_ROUTE, json={"agent_reply_delay": reply_delay})
        agent.raise_for_status()
    return float(agent.json()["previous"])


def _cpu_since(usage: Usage, start: dict[int, float]) -> dict[str, float]:
    """CPU seconds since `start` per watched process (a group's processes summed), by the harness's name;
    a process born in between counts from zero."""
    found: dict[str, float] = {}
    for row in usage.watched():
        key = row.group if row.label == row.group else f"{row.group} (child)"
        for pid in row.pids:
            seconds = infra.cpu_seconds(pid)
            if seconds is not None:
                found[key] = found.get(key, 0.0) + seconds - start.get(pid, 0.0)
    return found
