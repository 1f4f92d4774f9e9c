"""The `lexdesk chaos` command. The CLI registers it with `app.command("chaos")(chaos)`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def chaos(
    conversations: Annotated[int, typer.Option(min=1, help="Concurrent customer conversations to drive")] = 200,
    seconds: Annotated[float, typer.Option(min=30, help="Bound on load plus settling, in seconds")] = 600,
    seed: Annotated[int, typer.Option(help="Seed of the fault schedule and the customers' timing")] = 1,
    exchanges: Annotated[int, typer.Option(min=1, help="Agent exchanges per conversation")] = 3,
    report: Annotated[Path | None, typer.Option(help="Also write the report as JSON here")] = None,
) -> None:
    """Kill workers, restart RabbitMQ and PostgreSQL, kill an edge node and make Talkdesk fail, under
    load; then count what was lost, duplicated or reordered. Exits 1 if a target is missed."""
    from tools.chaos.run import main

    outcome = main(conversations=conversations, seconds=seconds, seed=seed, report_path=report,
                   exchanges=exchanges)
    raise typer.Exit(0 if outcome.passed else 1)
