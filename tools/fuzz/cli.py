"""The `lexdesk fuzz` command. The CLI registers it with `app.command("fuzz")(fuzz)`; `lexdesk chaos`
may call `tools.fuzz.main` directly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fuzz(
    examples: Annotated[int, typer.Option(min=1, help="Generated inputs in all: WebSocket frames, callback "
                                                      "requests and Schemathesis cases (50/35/15)")] = 10_000,
    seed: Annotated[int, typer.Option(help="Hypothesis seed: the same seed generates the same inputs")] = 0,
    backend: Annotated[str, typer.Option(help="embedded (SQLite + embedded broker) or postgres (a fresh "
                                              "database on 127.0.0.1:5432 and a fresh RabbitMQ vhost)")] = "embedded",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here")] = None,
    seconds: Annotated[float, typer.Option(min=60, help="Bound on the whole run, start-up included")] = 600.0,
    skip_known_bugs: Annotated[bool, typer.Option(help="Do not send inputs that trigger the product bugs "
                                                       "listed in tools/fuzz/known.py")] = False,
) -> None:
    """Throw generated bad input at the customer WebSocket and the Talkdesk callbacks (Hypothesis) and
    at the callback app's OpenAPI schema (Schemathesis): no crash, no 5xx, no effect on bystander
    conversations. Exits 1 on any violation."""
    from tools.fuzz.run import main
    from tools.harness.backends import BACKENDS

    if backend not in BACKENDS:
        raise typer.BadParameter(f"one of {', '.join(BACKENDS)}", param_hint="--backend")
    report = main(examples=examples, seed=seed, backend=backend, seconds=seconds, skip_known_bugs=skip_known_bugs,
                  json_path=json_path)
    raise typer.Exit(0 if report.passed else 1)
