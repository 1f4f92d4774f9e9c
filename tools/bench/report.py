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

    @property
    def complete(self) -> bool:
        """Every message answered, every idle socket opened, no error and no lost frame."""
        return (self.error_count == 0 and self.gaps == 0
                and all(t.answered == t.expected for t in (self.bot, self.handoff, self.agent))
                and self.edge_memory.opened == self.edge_memory.requested)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "complete": self.complete}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


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

    verdict = "[green]complete[/green]" if report.complete else "[red]INCOMPLETE[/red]"
    console.print(f"{verdict}: duplicates={report.duplicates} gaps={report.gaps} errors={report.error_count}")
    for error in report.errors:
        console.print(f"  [red]error[/red] {error}")
