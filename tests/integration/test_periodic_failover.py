"""The sweep has no single process to lose (shared/periodic.py): two timers workers and no beat, the
one running the sweep is SIGKILLed, the other takes over; with none left, /readyz says so."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from shared.periodic import last_run
from tools.harness.backends import backend
from tools.harness.system import System


def _wait_for(check: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()  # type: ignore[operator]
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def test_killing_the_worker_that_runs_the_sweep_hands_it_to_another(tmp_path: Path) -> None:
    with backend("postgres", tmp_path, label="failover") as shape, System(
            tmp_path, shape.database_url, shape.broker_url,
            worker_queues=("routing,lex,talkdesk", "timers", "timers")) as system:
        timers = {proc.popen.pid: proc for name, proc in system.procs.items()  # type: ignore[union-attr]
                  if name.startswith("worker-timers")}
        assert len(timers) == 2

        def sweeper() -> int | None:
            ran_at, holder = last_run(shape.database_url, "sweep")
            return int(holder.rsplit(":", 1)[1]) if holder and ran_at else None

        first = _wait_for(sweeper, 20, "a first sweep")
        assert first in timers
        os.kill(first, signal.SIGKILL)  # type: ignore[arg-type]
        killed_at, _ = last_run(shape.database_url, "sweep")

        def taken_over() -> bool:
            ran_at, holder = last_run(shape.database_url, "sweep")
            return bool(ran_at and killed_at and ran_at > killed_at and holder and not holder.endswith(f":{first}"))

        # The dead worker's hold (if it died mid-run) expires after max(30 s, 4 intervals) at worst; a
        # kill between runs is taken over at the next interval.
        _wait_for(taken_over, 75, "the other timers worker running the sweep")
        survivor = sweeper()
        assert survivor in timers and survivor != first

        with system.admin() as admin:
            assert admin.get("/readyz").status_code == 200
        os.kill(survivor, signal.SIGKILL)  # type: ignore[arg-type]

        def not_ready() -> str | None:
            with system.admin() as admin:
                answer = admin.get("/readyz")
            return answer.text if answer.status_code == 503 else None

        # Three sweep intervals (2 s in the harness) without a sweep, and /readyz names the cause.
        body = _wait_for(not_ready, 30, "/readyz saying no sweep runs")
        assert "sweep" in str(body) and "timers" in str(body)
