"""`lexdesk bench`: latency, throughput and memory of the whole system, on loopback (see runner.py).

`main` is imported lazily: `lexdesk/cli.py` imports `lexdesk.bench.cli` to register the command, and
every process the system runs is a `python -m lexdesk ...`, so this package must cost nothing to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lexdesk.bench.report import BenchReport
    from lexdesk.bench.runner import main

__all__ = ["BenchReport", "main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from lexdesk.bench.runner import main

        return main
    if name == "BenchReport":
        from lexdesk.bench.report import BenchReport

        return BenchReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
