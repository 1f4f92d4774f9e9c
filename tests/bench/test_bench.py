"""`lexdesk bench` on a tiny load: the report is complete and consistent. No absolute timings are
asserted (machines are noisy); only orderings that hold by construction or by causality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tools.bench.cli import bench
from tools.bench.stats import Latency, percentile

CUSTOMERS, MESSAGES, IDLE_SOCKETS = 5, 2, 100  # 100 sockets: a clear RSS signal over noise
SYSTEM_PROCESSES = {"talkdesk", "lex", "callback", "edge-0", "worker-routing-lex-talkdesk-timers"}


def test_percentiles_are_nearest_rank_and_ordered() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert [percentile(samples, f) for f in (0.5, 0.95, 0.99, 1.0)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 0.5) == 7.0
    stats = Latency.of([0.3, 0.001, 0.02, 5.0])
    assert stats.count == 4 and stats.max_ms == 5000.0
    assert Latency.of([]) == Latency(0, None, None, None, None, None)


def _ordered(stats: dict[str, Any]) -> None:
    assert stats["count"] > 0, stats
    assert stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"], stats


@pytest.mark.timeout(120)
def test_tiny_embedded_run_reports_everything(tmp_path: Path) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(bench)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["--customers", str(CUSTOMERS), "--messages", str(MESSAGES),
                                      "--idle-sockets", str(IDLE_SOCKETS), "--backend", "embedded",
                                      "--seconds", "50", "--seconds-per-phase", "0", "--json", str(out)])
    assert result.exit_code == 0, result.output + (repr(result.exception) if result.exception else "")
    assert "Round trips" in result.output and "KiB per connection" in result.output
    report = json.loads(out.read_text())

    assert report["complete"] is True, report["errors"]
    assert report["steady"] is None and report["chain"] is None  # skipped: tests/bench/test_fixed.py runs them
    assert report["backend"] == "embedded" and report["cores"] >= 1
    assert report["error_count"] == 0 and report["gaps"] == 0
    # Every message answered.
    for kind, expected in (("bot", CUSTOMERS * MESSAGES), ("agent", CUSTOMERS * MESSAGES), ("handoff", CUSTOMERS)):
        trips = report[kind]
        assert trips["expected"] == trips["sent"] == trips["answered"] == trips["latency"]["count"] == expected, kind
        assert trips["per_second"] > 0
        _ordered(trips["latency"])
    assert report["accepted"]["count"] == 2 * CUSTOMERS * MESSAGES + CUSTOMERS  # every message got `accepted`
    _ordered(report["accepted"])
    # The scripted agent waits its reply delay before echoing: no echo can come back sooner.
    assert report["agent"]["latency"]["p50_ms"] >= 1000 * report["agent_reply_delay_seconds"]

    memory = report["edge_memory"]
    assert memory["opened"] == memory["requested"] == IDLE_SOCKETS
    _ordered(memory["welcome"])
    assert 0 < memory["kib_per_connection"] < 1024

    processes = {p["name"]: p for p in report["processes"]}
    assert processes.keys() >= SYSTEM_PROCESSES
    for name in SYSTEM_PROCESSES:
        assert processes[name]["rss_kib"] > 0 and processes[name]["cpu_seconds"] is not None, processes[name]

    assert report["cpu_ms_per_message"] > 0
    assert report["db_commits_per_message"] is None  # PostgreSQL only

    for kind in ("bot", "agent"):
        hops = report["hops"][kind]
        assert hops, kind
        for stats in hops.values():
            _ordered(stats)
