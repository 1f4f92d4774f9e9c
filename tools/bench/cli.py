"""The `lexdesk bench` command. Register it with `app.command()(bench)` in lexdesk/cli.py; this module
imports nothing heavy until the command runs."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class BackendName(StrEnum):
    embedded = "embedded"
    postgres = "postgres"


def bench(
    customers: Annotated[int, typer.Option(min=1, help="Concurrent customers in the load phases")] = 100,
    messages: Annotated[int, typer.Option(min=1, help="Bot messages, then agent messages, per customer")] = 5,
    idle_sockets: Annotated[int, typer.Option(min=0, help="Idle WebSockets (each with a conversation) for the "
                                                          "edge's memory per connection")] = 1000,
    backend: Annotated[BackendName, typer.Option(help="embedded: SQLite + embedded broker, one worker; postgres: "
                                                      "PostgreSQL + RabbitMQ on 127.0.0.1, a worker per queue")]
    = BackendName.embedded,
    seconds: Annotated[float, typer.Option(min=1, help="Time budget of the load phases, start-up included")] = 300,
    in_flight: Annotated[int, typer.Option(min=1, help="Customers in flight in the fixed-concurrency phases "
                                                       "(lexdesk's agent round trips and the bare Celery chain)")]
    = 16,
    seconds_per_phase: Annotated[float, typer.Option(min=0, help="Length of each fixed-concurrency phase; "
                                                                 "0 skips them")] = 20.0,
    talkdesk_latency: Annotated[float, typer.Option(min=0, help="Seconds injected into every Talkdesk call during "
                                                                "lexdesk's fixed-concurrency phase; the report "
                                                                "compares throughput with Little's law")] = 0.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here")] = None,
) -> None:
    """Measure round trips (bot, agent, accepted), throughput and memory of the whole system on loopback,
    then agent round trips at fixed concurrency next to a bare Celery chain with the same hop count on the
    same broker (ratios, targets, commits per message). Exits 1 if any message went unanswered, so an
    incomplete run is never mistaken for a result."""
    from rich.console import Console

    from tools.bench.report import render
    from tools.bench.runner import main

    progress = Console(stderr=True)
    report = main(customers=customers, messages=messages, idle_sockets=idle_sockets, backend=backend.value,
                  seconds=seconds, in_flight=in_flight, seconds_per_phase=seconds_per_phase,
                  talkdesk_latency=talkdesk_latency, log=lambda line: progress.print(f"[dim]bench: {line}[/dim]"))
    # Piped into a file (to paste into the README) rich would wrap at 80 columns; the tables need ~110.
    output = Console()
    render(report, output if output.is_terminal else Console(width=120))
    if json_path is not None:
        report.write_json(json_path)
    if not report.complete:
        raise typer.Exit(1)
