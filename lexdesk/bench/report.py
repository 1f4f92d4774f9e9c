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

from lexdesk.bench.stats import Latency


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
class ProcessMemory:
    name: str  # the harness's name for the process (edge-0, worker-lex, ...)
    pid: int
    command: str
    rss_kib: int | None


@dataclass
class BenchReport:
    backend: str
    cores: int
    python: str
    started_at: str
    config: dict[str, Any]
    startup_seconds: float
    elapsed_seconds: float
    bot: RoundTrips
    handoff: RoundTrips  # "I want to talk to an agent" → agent_joined event
    agent: RoundTrips
    accepted: Latency  # message → accepted, every customer message of the run
    agent_reply_delay_seconds: float  # the emulator's scripted agent waits this before each echo
    agent_join_delay_seconds: float
    edge_memory: EdgeMemory
    processes: list[ProcessMemory]
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
    console.print(f"start-up {report.startup_seconds:.1f}s, measured {report.elapsed_seconds:.1f}s; "
                  f"scripted agent reply delay {report.agent_reply_delay_seconds:g}s (included in the agent "
                  f"round trip, not subtracted), agent join delay {report.agent_join_delay_seconds:g}s")

    latency = Table(title="Round trips (ms)")
    for column in ("what", "answered/expected", "p50", "p95", "p99", "max", "per second"):
        latency.add_column(column, justify="left" if column == "what" else "right")
    rows: list[tuple[str, RoundTrips | None, Latency]] = [
        ("bot: message → bot answer", report.bot, report.bot.latency),
        ("agent: message → agent echo", report.agent, report.agent.latency),
        ("handoff: escalation → agent_joined", report.handoff, report.handoff.latency),
        ("accepted: message → accepted", None, report.accepted),
        ("hello → welcome (idle sockets)", None, report.edge_memory.welcome),
    ]
    for name, trips, stats in rows:
        counts = f"{trips.answered}/{trips.expected}" if trips else str(stats.count)
        rate = f"{trips.per_second:,.1f}" if trips else "-"
        latency.add_row(name, counts, _ms(stats.p50_ms), _ms(stats.p95_ms), _ms(stats.p99_ms), _ms(stats.max_ms), rate)
    console.print(latency)

    if any(report.hops.values()):
        hops = Table(title="Where the time goes (ms, from message timestamps)")
        for column in ("trip", "hop", "n", "p50", "p95", "max"):
            hops.add_column(column, justify="left" if column in ("trip", "hop") else "right")
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

    processes = Table(title="RSS at the end")
    for column in ("process", "pid", "command", "RSS KiB"):
        processes.add_column(column, justify="right" if column in ("pid", "RSS KiB") else "left")
    for proc in report.processes:
        processes.add_row(proc.name, str(proc.pid), proc.command, "-" if proc.rss_kib is None else f"{proc.rss_kib:,}")
    total = sum(p.rss_kib or 0 for p in report.processes if p.name != "bench client")
    processes.add_row("total (system)", "", "", f"{total:,}")
    console.print(processes)

    verdict = "[green]complete[/green]" if report.complete else "[red]INCOMPLETE[/red]"
    console.print(f"{verdict}: duplicates={report.duplicates} gaps={report.gaps} errors={report.error_count}")
    for error in report.errors:
        console.print(f"  [red]error[/red] {error}")
