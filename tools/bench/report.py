"""The bench's result: a plain dataclass tree (so `dataclasses.asdict` is the JSON) and its rendering
as rich tables for people."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tools.bench.stats import Latency


@dataclass
class RoundTrips:
    """One kind of round trip over all customers. `expected` is what the run asked for; `answered`
    below it means a frame never came (or the time budget ran out)."""

    expected: int
    sent: int
    answered: int
    latency: Latency
    wall_seconds: float  # from the phase's first send to its last answer, all customers together
    per_second: float  # answered / wall_seconds


@dataclass
class EdgeMemory:
    requested: int
    opened: int  # idle sockets that got their `welcome` (capped by the file descriptor limit)
    warmup: int  # sockets opened before the baseline, so the edge's thread pool is in it
    rss_before_kib: int
    rss_after_kib: int
    kib_per_connection: float | None
    open_seconds: float
    connections_per_second: float
    welcome: Latency  # hello → welcome of the idle sockets (the edge inserts a conversation each)


@dataclass
class ProcessUsage:
    name: str  # the harness's name for the process (edge-0, worker-lex, ...), or a group of processes
    group: str  # for a forked child, its parent's name
    product: bool  # edge, callback or worker: what a deployment runs (not an emulator, the bench or infra)
    pid: int | None  # None for a group
    command: str
    rss_kib: int | None  # at the end of the run
    cpu_seconds: float | None  # during the load phases (bot, handoff, agent)
    cpu_percent: float | None  # of one core, over the load phases


@dataclass
class ChainReport:
    """The bare Celery chain (tools/bench/baseline.py): the floor of an agent round trip on this broker."""

    hops: int  # task hops before the reply
    in_flight: int
    seconds: float  # the measured window asked for
    broker: str  # transport and where (no credentials)
    worker_concurrency: int  # threads per hop's worker process, as lexdesk's workers in the harness
    trips: RoundTrips  # sent = round trips started in the window; answered below it means some never came
    cpu_ms_per_trip: float | None  # CPU of the four worker processes per round trip
    cpu_percent: float | None  # the four workers together, of one core, over the window
    machine_busy_percent: float | None = None  # all cores of the machine, anyone's work, over the window
    loadavg_after: float | None = None  # 1-minute load average at the end of the window
    error_count: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SteadyReport:
    """lexdesk's agent round trips at fixed concurrency: `in_flight` customers, each already at an agent,
    closed loop (say, wait for the scripted agent's echo, say the next) for `seconds`."""

    in_flight: int
    seconds: float
    agent_reply_delay_seconds: float  # the scripted agent's delay in this phase (0: the vendor is not measured)
    talkdesk_latency_seconds: float  # injected into every Talkdesk API call during this phase
    trips: RoundTrips
    accepted: Latency  # message → `accepted`
    # pg_stat_database.xact_commit of the run's database, read before the window and PG_STATS_LAG after
    # it, divided by the round trips: it includes background work (sweep, periodic jobs, pings, acks).
    db_commits: int | None
    db_commits_per_message: float | None
    stats_lag_seconds: float  # how long after the window the commit counter was read
    cpu_ms_per_message: float | None  # the product's processes
    database_cpu_ms_per_message: float | None
    cpu_percent: dict[str, float]  # per process (and PostgreSQL's backends), of one core, over the window
    hops: dict[str, Latency]  # where the time goes, from the rows' timestamps (tools/bench/stages.py)
    machine_busy_percent: float | None = None  # all cores of the machine, anyone's work, over the window
    loadavg_after: float | None = None  # 1-minute load average at the end of the window
    # Commits per second while lexdesk sat idle (during the chain, 16 customers at an agent, nobody
    # typing), and the commits per message with that rate taken out over the counted span: an estimate.
    background_commits_per_second: float | None = None
    db_commits_per_message_net: float | None = None
    duplicates: int = 0
    gaps: int = 0


@dataclass
class Target:
    name: str
    measured: float | None
    limit: float
    comparison: str  # ">=" or "<="
    met: bool | None  # None: not applicable to this run (see `note`) or not measured
    note: str = ""


@dataclass
class Comparison:
    """lexdesk ÷ the chain, and the Little's law bound when latency is injected into Talkdesk."""

    throughput_ratio: float | None
    p50_ratio: float | None
    p99_ratio: float | None
    talkdesk_concurrency: int  # threads of the worker(s) consuming the talkdesk queue
    talkdesk_latency_seconds: float
    littles_law_per_second: float | None  # min(talkdesk_concurrency, in_flight) / latency
    littles_law_ratio: float | None  # lexdesk's throughput ÷ that
    targets: list[Target]


@dataclass
class BenchReport:
    backend: str
    cores: int
    python: str
    started_at: str
    loadavg_before: tuple[float, float, float]  # other work on the machine skews every number
    config: dict[str, Any]
    startup_seconds: float
    elapsed_seconds: float
    bot: RoundTrips
    handoff: RoundTrips  # "I want to talk to an agent" → agent_joined event
    agent: RoundTrips
    # message → `accepted`, every customer message of the load: the edge answers once it has committed
    # the row and published the follow-up task (shared/inbound.py).
    accepted: Latency
    cold_start: dict[str, float | None]  # ms of the very first bot / handoff / agent round trip after start-up
    agent_reply_delay_seconds: float  # the emulator's scripted agent waits this before each echo
    agent_join_delay_seconds: float
    edge_memory: EdgeMemory
    load_seconds: float  # wall time of the load phases, the window of cpu_seconds
    # CPU the product's processes (edge, callback, workers) spent per customer message of the load
    # phases; unlike latency it barely depends on what else the machine is doing.
    cpu_ms_per_message: float | None
    # The backends serving this run's PostgreSQL database (postgres backend). RabbitMQ is left out: it is
    # one process for every vhost, so on a shared machine its CPU is not this run's alone.
    database_cpu_ms_per_message: float | None
    # Database transactions committed per customer message of the load phases (postgres backend): each
    # costs round trips to the server, and a writing one a WAL flush; this is where the workers wait.
    db_commits_per_message: float | None
    processes: list[ProcessUsage]
    hops: dict[str, dict[str, Latency]]
    duplicates: int  # frames received twice (dropped by the client, as a browser would)
    gaps: int  # frames skipped over: must be 0
    error_count: int
    errors: list[str] = field(default_factory=list)  # the first few
    # The fixed-concurrency phases (None when --seconds-per-phase 0) and their comparison.
    chain: ChainReport | None = None
    steady: SteadyReport | None = None
    comparison: Comparison | None = None

    @property
    def complete(self) -> bool:
        """Every message answered, every idle socket opened, no error and no lost frame."""
        steady = self.steady is None or (self.steady.trips.answered == self.steady.trips.sent
                                         and self.steady.gaps == 0)
        chain = self.chain is None or (self.chain.error_count == 0
                                       and self.chain.trips.answered == self.chain.trips.sent)
        return (self.error_count == 0 and self.gaps == 0
                and all(t.answered == t.expected for t in (self.bot, self.handoff, self.agent))
                and self.edge_memory.opened == self.edge_memory.requested and steady and chain)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "complete": self.complete}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# The targets (at 16 customers in flight on PostgreSQL + RabbitMQ).
TARGET_IN_FLIGHT = 16
THROUGHPUT_VS_CHAIN = 0.5  # lexdesk's agent round trips per second >= this x the chain's
P50_VS_CHAIN = 5.0  # lexdesk's p50 <= this x the chain's
LITTLES_LAW_SHARE = 0.8  # with latency injected into Talkdesk: throughput >= this x concurrency / latency


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours is not None and theirs else None


def compare(steady: SteadyReport, chain: ChainReport | None, *, backend: str, talkdesk_concurrency: int) -> Comparison:
    """lexdesk ÷ chain, the Little's law bound, and the targets, each met, missed or not applicable."""
    ours, latency = steady.trips, steady.talkdesk_latency_seconds
    theirs = chain.trips if chain is not None else None
    throughput = _ratio(ours.per_second, theirs.per_second if theirs else None)
    p50 = _ratio(ours.latency.p50_ms, theirs.latency.p50_ms if theirs else None)
    p99 = _ratio(ours.latency.p99_ms, theirs.latency.p99_ms if theirs else None)
    # Little's law: at most min(concurrency, in flight) calls are open at once, each `latency` long.
    bound = round(min(talkdesk_concurrency, steady.in_flight) / latency, 2) if latency > 0 else None
    littles = _ratio(ours.per_second, bound)
    shape = backend == "postgres" and steady.in_flight == TARGET_IN_FLIGHT
    vs_chain = "" if shape and latency == 0 else (
        f"defined at {TARGET_IN_FLIGHT} in flight on PostgreSQL + RabbitMQ with no latency injected")

    def target(name: str, measured: float | None, limit: float, comparison: str, note: str) -> Target:
        met = None if note or measured is None else (measured >= limit if comparison == ">=" else measured <= limit)
        return Target(name, measured, limit, comparison, met, note or ("" if measured is not None else "not measured"))

    littles_note = "" if latency > 0 else "run with --talkdesk-latency 0.1"
    if latency > 0 and backend != "postgres":
        littles_note = "defined on PostgreSQL + RabbitMQ"
    return Comparison(
        throughput_ratio=throughput, p50_ratio=p50, p99_ratio=p99, talkdesk_concurrency=talkdesk_concurrency,
        talkdesk_latency_seconds=latency, littles_law_per_second=bound, littles_law_ratio=littles,
        targets=[
            target("throughput ÷ chain's", throughput, THROUGHPUT_VS_CHAIN, ">=", vs_chain),
            target("p50 ÷ chain's p50", p50, P50_VS_CHAIN, "<=", vs_chain),
            target("throughput ÷ Little's law (concurrency ÷ latency)", littles, LITTLES_LAW_SHARE, ">=",
                   littles_note),
        ])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(report: BenchReport, console: Console) -> None:
    config = report.config
    console.print(f"[bold]lexdesk bench[/bold]  backend={report.backend}  cores={report.cores}  "
                  f"python={report.python}  customers={config['customers']}  messages={config['messages']}  "
                  f"idle_sockets={config['idle_sockets']}  budget={config['seconds']:g}s")
    load = ", ".join(f"{value:.2f}" for value in report.loadavg_before)
    console.print(f"load average before the run {load}; start-up {report.startup_seconds:.1f}s, "
                  f"measured {report.elapsed_seconds:.1f}s")
    console.print(f"scripted agent reply delay {report.agent_reply_delay_seconds:g}s (inside the agent round "
                  f"trip, not subtracted); agent join delay {report.agent_join_delay_seconds:g}s")

    latency = Table(title="Round trips (ms)")
    for column in ("what", "done/asked", "p50", "p95", "p99", "max", "per s"):
        latency.add_column(column, justify="left" if column == "what" else "right", no_wrap=True)
    rows: list[tuple[str, RoundTrips | None, Latency]] = [
        ("bot: message → bot answer", report.bot, report.bot.latency),
        ("agent: message → agent echo", report.agent, report.agent.latency),
        ("handoff: escalate → agent_joined", report.handoff, report.handoff.latency),
        ("message → accepted (all)", None, report.accepted),
        ("hello → welcome (idle sockets)", None, report.edge_memory.welcome),
    ]
    for name, trips, stats in rows:
        counts = f"{trips.answered}/{trips.expected}" if trips else str(stats.count)
        rate = f"{trips.per_second:,.1f}" if trips else "-"
        latency.add_row(name, counts, _ms(stats.p50_ms), _ms(stats.p95_ms), _ms(stats.p99_ms), _ms(stats.max_ms), rate)
    console.print(latency)
    cold = report.cold_start
    console.print("cold start (first round trips after start-up, one customer, not in the table): "
                  + ", ".join(f"{name.removesuffix('_ms')} {_ms(value)} ms" for name, value in cold.items()))

    if any(report.hops.values()):
        hops = Table(title="Where the time goes (ms, from message timestamps)")
        for column in ("trip", "hop", "n", "p50", "p95", "max"):
            hops.add_column(column, justify="left" if column in ("trip", "hop") else "right", no_wrap=True)
        for kind, by_hop in report.hops.items():
            for hop, stats in by_hop.items():
                hops.add_row(kind, hop, str(stats.count), _ms(stats.p50_ms), _ms(stats.p95_ms), _ms(stats.max_ms))
        console.print(hops)

    memory = report.edge_memory
    console.print(f"edge memory: {memory.opened}/{memory.requested} idle sockets (+{memory.warmup} warm-up) in "
                  f"{memory.open_seconds:.1f}s ({memory.connections_per_second:,.0f}/s); RSS "
                  f"{memory.rss_before_kib:,} → {memory.rss_after_kib:,} KiB = "
                  f"[bold]{'-' if memory.kib_per_connection is None else f'{memory.kib_per_connection:.1f}'} "
                  f"KiB per connection[/bold]")

    processes = Table(title=f"Processes: RSS at the end, CPU over the {report.load_seconds:.1f}s of load")
    for column in ("process", "pid", "command", "RSS KiB", "CPU s", "% core"):
        processes.add_column(column, justify="left" if column in ("process", "command") else "right", no_wrap=True,
                             max_width=36 if column == "command" else None,
                             min_width=None if column in ("process", "command") else len(column) + 1,
                             overflow="ellipsis")
    for proc in report.processes:
        processes.add_row(proc.name, "" if proc.pid is None else str(proc.pid), proc.command,
                          "-" if proc.rss_kib is None else f"{proc.rss_kib:,}",
                          "-" if proc.cpu_seconds is None else f"{proc.cpu_seconds:.1f}",
                          "-" if proc.cpu_percent is None else f"{proc.cpu_percent:.0f}")
    # The system's own processes: not the bench, and not the shared PostgreSQL / RabbitMQ servers.
    system = [p for p in report.processes if p.pid is not None and p.name != "bench client"]
    totals = (("total: product", [p for p in report.processes if p.product]), ("total: with emulators", system))
    for title, members in totals:
        rss, cpu = sum(p.rss_kib or 0 for p in members), sum(p.cpu_seconds or 0.0 for p in members)
        share = sum(p.cpu_percent or 0.0 for p in members)
        processes.add_row(title, "", "", f"{rss:,}", f"{cpu:.1f}", f"{share:.0f}")
    console.print(processes)
    infra = "" if report.database_cpu_ms_per_message is None else (
        f", plus {report.database_cpu_ms_per_message:.1f} ms in PostgreSQL")
    commits = "" if report.db_commits_per_message is None else (
        f"; {report.db_commits_per_message:.1f} database commits per message")
    console.print(f"CPU per customer message (load phases): {_ms(report.cpu_ms_per_message)} ms in the product's "
                  f"processes{infra}{commits}")

    if report.steady is not None:
        _render_fixed(report, console)

    verdict = "[green]complete[/green]" if report.complete else "[red]INCOMPLETE[/red]"
    console.print(f"{verdict}: duplicates={report.duplicates} gaps={report.gaps} errors={report.error_count}")
    for error in report.errors:
        console.print(f"  [red]error[/red] {error}")


def _render_fixed(report: BenchReport, console: Console) -> None:
    steady, chain, comparison = report.steady, report.chain, report.comparison
    assert steady is not None
    title = (f"Fixed concurrency: {steady.in_flight} in flight, closed loop, {steady.seconds:g}s each (ms); "
             f"agent reply delay {steady.agent_reply_delay_seconds:g}s, Talkdesk latency "
             f"{steady.talkdesk_latency_seconds:g}s")
    table = Table(title=title)
    for column in ("what", "done/sent", "p50", "p95", "p99", "max", "per s"):
        table.add_column(column, justify="left" if column == "what" else "right", no_wrap=True)
    rows: list[tuple[str, RoundTrips]] = [("lexdesk: message → agent echo", steady.trips)]
    if chain is not None:
        rows.append((f"bare Celery chain: {chain.hops} task hops + reply", chain.trips))
    for name, trips in rows:
        stats = trips.latency
        table.add_row(name, f"{trips.answered}/{trips.sent}", _ms(stats.p50_ms), _ms(stats.p95_ms),
                      _ms(stats.p99_ms), _ms(stats.max_ms), f"{trips.per_second:,.1f}")
    if comparison is not None:
        def ratio(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}x"

        table.add_row("lexdesk ÷ chain", "", ratio(comparison.p50_ratio), "", ratio(comparison.p99_ratio), "",
                      ratio(comparison.throughput_ratio))
    console.print(table)
    console.print(f"machine during lexdesk's window: {_ms(steady.machine_busy_percent)}% of all {report.cores} cores "
                  f"busy (anyone's work), load average {_ms(steady.loadavg_after)} at its end")
    if chain is not None:
        console.print(f"chain: {chain.broker}, {chain.worker_concurrency} threads per hop's worker, "
                      f"{_ms(chain.cpu_ms_per_trip)} ms CPU per round trip in its workers "
                      f"({_ms(chain.cpu_percent)}% of a core); machine {_ms(chain.machine_busy_percent)}% busy, "
                      f"load average {_ms(chain.loadavg_after)} at its end")
        for error in chain.errors:
            console.print(f"  [red]chain error[/red] {error}")
    commits = "-" if steady.db_commits_per_message is None else f"{steady.db_commits_per_message:.1f}"
    database = "" if steady.database_cpu_ms_per_message is None else (
        f" + {steady.database_cpu_ms_per_message:.1f} ms in PostgreSQL")
    where = (f"pg_stat_database.xact_commit of the run's database over the window and {steady.stats_lag_seconds:g}s "
             "after it, so background work such as the sweep and pings is in it" if steady.stats_lag_seconds
             else "measured on PostgreSQL only")
    net = "" if steady.db_commits_per_message_net is None else (
        f"; idle, it commits {steady.background_commits_per_second:g}/s, which leaves "
        f"~{steady.db_commits_per_message_net:.1f} per message")
    console.print(f"lexdesk: [bold]{commits} database commits per message[/bold] ({where}{net}); "
                  f"{_ms(steady.cpu_ms_per_message)} ms CPU per message in the product's processes{database}")
    busy = sorted(steady.cpu_percent.items(), key=lambda item: -item[1])[:6]
    console.print("busiest processes in the window (% of a core): "
                  + ", ".join(f"{name} {value:.0f}" for name, value in busy))
    if steady.hops:
        hops = Table(title=f"Where the time goes at {steady.in_flight} in flight (ms, from message timestamps)")
        for column in ("hop", "n", "p50", "p95", "max"):
            hops.add_column(column, justify="left" if column == "hop" else "right", no_wrap=True)
        for hop, stats in steady.hops.items():
            hops.add_row(hop, str(stats.count), _ms(stats.p50_ms), _ms(stats.p95_ms), _ms(stats.max_ms))
        console.print(hops)
    if comparison is None:
        return
    if comparison.littles_law_per_second is not None:
        console.print(f"Little's law: min({comparison.talkdesk_concurrency} Talkdesk worker threads, "
                      f"{steady.in_flight} in flight) ÷ {comparison.talkdesk_latency_seconds:g}s = "
                      f"{comparison.littles_law_per_second:,.1f}/s expected at most; measured "
                      f"{steady.trips.per_second:,.1f}/s = {comparison.littles_law_ratio or 0:.2f} of it")
    for target in comparison.targets:
        measured = "-" if target.measured is None else f"{target.measured:.2f}"
        if target.met is None:
            verdict = f"[dim]n/a ({target.note})[/dim]"
        else:
            verdict = "[green]met[/green]" if target.met else "[red]MISSED[/red]"
        console.print(f"target {target.name} {target.comparison} {target.limit:g}: {measured} {verdict}")

