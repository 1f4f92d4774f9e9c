"""The fixed-concurrency phases of `lexdesk bench` on a tiny load: lexdesk's agent round trips and the
bare Celery chain both run, every message is answered, and the report carries the ratios, the Little's
law figures and the targets. No timing or ratio is asserted (machines are noisy), only that they exist."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tools.bench.cli import bench
from tools.bench.report import (
    LITTLES_LAW_SHARE,
    P50_VS_CHAIN,
    THROUGHPUT_VS_CHAIN,
    ChainReport,
    RoundTrips,
    SteadyReport,
    compare,
)
from tools.bench.stats import Latency
from tools.bench.steady import talkdesk_concurrency

IN_FLIGHT, SECONDS, LATENCY = 3, 3, 0.05


def _answered(trips: dict[str, Any]) -> None:
    assert trips["sent"] > 0 and trips["answered"] == trips["sent"] == trips["latency"]["count"], trips
    latency = trips["latency"]
    assert latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"], latency
    assert trips["per_second"] > 0


@pytest.mark.timeout(120)
def test_tiny_fixed_concurrency_run_reports_ratios(tmp_path: Path) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(bench)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["--customers", "1", "--messages", "1", "--idle-sockets", "0",
                                      "--backend", "embedded", "--seconds", "40", "--in-flight", str(IN_FLIGHT),
                                      "--seconds-per-phase", str(SECONDS), "--talkdesk-latency", str(LATENCY),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output + (repr(result.exception) if result.exception else "")
    assert "bare Celery chain" in result.output and "lexdesk ÷ chain" in result.output
    assert "Little's law" in result.output
    report = json.loads(out.read_text())
    assert report["complete"] is True, report["errors"]

    steady, chain, comparison = report["steady"], report["chain"], report["comparison"]
    assert steady["in_flight"] == chain["in_flight"] == IN_FLIGHT
    assert steady["agent_reply_delay_seconds"] == 0 and steady["talkdesk_latency_seconds"] == LATENCY
    _answered(steady["trips"])
    _answered(chain["trips"])
    assert chain["hops"] == 4 and chain["error_count"] == 0
    assert steady["accepted"]["count"] == steady["trips"]["sent"]
    assert steady["db_commits_per_message"] is None  # PostgreSQL only
    assert steady["hops"] and steady["cpu_percent"] and steady["machine_busy_percent"] is not None

    for name in ("throughput_ratio", "p50_ratio", "p99_ratio", "littles_law_ratio"):
        assert isinstance(comparison[name], float) and comparison[name] > 0, name
    # One worker serves every queue on the embedded backend, with the harness's 4 threads.
    assert comparison["talkdesk_concurrency"] == 4
    assert comparison["littles_law_per_second"] == pytest.approx(min(4, IN_FLIGHT) / LATENCY)
    targets = {t["name"]: t for t in comparison["targets"]}
    assert len(targets) == 3
    # The targets are defined on PostgreSQL + RabbitMQ: on the embedded backend they are not judged.
    assert all(t["met"] is None and t["note"] for t in targets.values()), targets


def _trips(per_second: float, p50_ms: float) -> RoundTrips:
    latency = Latency(100, p50_ms, p50_ms * 2, p50_ms * 3, p50_ms * 4, p50_ms)
    return RoundTrips(expected=100, sent=100, answered=100, latency=latency, wall_seconds=1.0, per_second=per_second)


def _steady(per_second: float, p50_ms: float, latency: float = 0.0, in_flight: int = 16) -> SteadyReport:
    return SteadyReport(in_flight=in_flight, seconds=20, agent_reply_delay_seconds=0.0,
                        talkdesk_latency_seconds=latency, trips=_trips(per_second, p50_ms),
                        accepted=Latency.of([0.01]), db_commits=700, db_commits_per_message=7.0,
                        stats_lag_seconds=11, cpu_ms_per_message=1.0, database_cpu_ms_per_message=1.0,
                        cpu_percent={}, hops={})


def _chain(per_second: float, p50_ms: float) -> ChainReport:
    return ChainReport(hops=4, in_flight=16, seconds=20, broker="amqp://x/v", worker_concurrency=4,
                       trips=_trips(per_second, p50_ms), cpu_ms_per_trip=1.0, cpu_percent=50.0)


def test_targets_are_judged_only_where_the_issue_defines_them() -> None:
    met = compare(_steady(80, 500), _chain(130, 120), backend="postgres", talkdesk_concurrency=4)
    assert met.throughput_ratio == pytest.approx(80 / 130, abs=1e-3)
    assert met.p50_ratio == pytest.approx(500 / 120, abs=1e-3)
    assert [t.met for t in met.targets] == [True, True, None]
    assert [t.limit for t in met.targets] == [THROUGHPUT_VS_CHAIN, P50_VS_CHAIN, LITTLES_LAW_SHARE]

    missed = compare(_steady(30, 700), _chain(130, 120), backend="postgres", talkdesk_concurrency=4)
    assert [t.met for t in missed.targets] == [False, False, None]

    embedded = compare(_steady(80, 500), _chain(130, 120), backend="embedded", talkdesk_concurrency=4)
    assert [t.met for t in embedded.targets] == [None, None, None]

    slow = compare(_steady(35, 500, latency=0.1), _chain(130, 120), backend="postgres", talkdesk_concurrency=4)
    assert slow.littles_law_per_second == 40.0 and slow.littles_law_ratio == pytest.approx(35 / 40)
    assert [t.met for t in slow.targets] == [None, None, True]

    no_chain = compare(_steady(80, 500), None, backend="postgres", talkdesk_concurrency=4)
    assert no_chain.throughput_ratio is None and no_chain.targets[0].met is None


def test_talkdesk_concurrency_sums_the_workers_consuming_talkdesk() -> None:
    def worker(queues: str, concurrency: str) -> SimpleNamespace:
        return SimpleNamespace(argv=["python", "-m", "lexdesk", "worker", "-Q", queues, "--concurrency", concurrency])

    system: Any = SimpleNamespace(procs={"talkdesk": SimpleNamespace(argv=["emulate", "talkdesk"]),
                                         "worker-lex": worker("lex", "8"), "worker-talkdesk": worker("talkdesk", "4"),
                                         "worker-talkdesk-2": worker("routing,talkdesk", "6")})
    assert talkdesk_concurrency(system) == 10
