"""The faults, on a schedule: SIGKILL and restart a worker every few seconds (cycling through the queues),
restart RabbitMQ once and PostgreSQL once, SIGKILL an edge node once and bring it back, and make the
Talkdesk emulator fail (5xx, 429 with Retry-After, stalls) for the whole window.

The process operations block (they wait for the restarted process to be ready), so they run one after
another on a thread of their own; the asyncio loop driving the customers is never blocked by them.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tools.chaos.plan import TALKDESK_NO_FAULTS, FaultPlan
from tools.chaos.postgres import PrivatePostgres
from tools.chaos.rabbitmq import PrivateRabbitMQ
from tools.harness.system import System


@dataclass(frozen=True)
class Planned:
    at: float  # seconds after the load started
    kind: str  # worker_kill | rabbitmq_restart | postgres_restart | edge_kill
    target: str


@dataclass
class Injected:
    """A fault as it happened: when, on what, how long recovery took, how many conversations were active."""

    at: float
    kind: str
    target: str
    took: float
    in_flight: int
    error: str | None = None


def schedule(plan: FaultPlan, workers: list[str], edges: list[str], rng: random.Random) -> list[Planned]:
    """Worker kills cycle through the queues at jittered intervals; the one-offs at their fractions."""
    planned: list[Planned] = []
    at, n = 0.0, 0
    while workers and (plan.worker_kills is None or n < plan.worker_kills):
        at += rng.uniform(*plan.worker_kill_every)
        if at >= plan.window:
            break
        planned.append(Planned(at, "worker_kill", workers[n % len(workers)]))
        n += 1
    one_offs = [(plan.rabbitmq_restart_at, "rabbitmq_restart", "rabbitmq"),
                (plan.postgres_restart_at, "postgres_restart", "postgres"),
                (plan.edge_kill_at, "edge_kill", edges[0] if edges else "")]
    planned += [Planned(fraction * plan.window, kind, target) for fraction, kind, target in one_offs
                if fraction is not None and target]
    return sorted(planned, key=lambda p: p.at)


class FaultInjector:
    def __init__(self, system: System, postgres: PrivatePostgres, rabbitmq: PrivateRabbitMQ, plan: FaultPlan,
                 rng: random.Random, in_flight: Callable[[], int]) -> None:
        self.system = system
        self.postgres = postgres
        self.rabbitmq = rabbitmq
        self.plan = plan
        self.in_flight = in_flight
        workers = [name for name in system.procs if name.startswith("worker-")]
        edges = [name for name in system.procs if name.startswith("edge-")]
        self.planned = schedule(plan, workers, edges, rng)
        self.injected: list[Injected] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def talkdesk_faults(self, on: bool) -> None:
        knobs = self.plan.talkdesk if on else TALKDESK_NO_FAULTS
        with self.system.talkdesk() as talkdesk:
            talkdesk.put("/_emulator/faults", json=knobs).raise_for_status()

    async def run(self, started: float) -> None:
        """Inject everything planned (in order, never overlapping); returns when done or stopped."""
        self._thread = threading.Thread(target=self._run, args=(started,), name="chaos-faults", daemon=True)
        self._thread.start()
        while self._thread.is_alive():
            await asyncio.sleep(0.2)

    def stop(self, timeout: float = 120.0) -> None:
        """Stop after the fault in progress, and wait for it: a restart still going on must not bring a
        server back after the clean-up has stopped it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, started: float) -> None:
        for planned in self.planned:
            if self._stop.wait(max(0.0, started + planned.at - time.monotonic())):
                return
            began, active = time.monotonic(), self.in_flight()
            error = None
            try:
                self._inject(planned)
            except Exception as exc:  # recorded and reported; the run goes on (ensure_running repairs)
                error = f"{type(exc).__name__}: {str(exc)[:300]}"
            self.injected.append(Injected(round(began - started, 1), planned.kind, planned.target,
                                          round(time.monotonic() - began, 1), active, error))
        # Talkdesk keeps failing until the window ends, whatever else was planned.
        self._stop.wait(max(0.0, started + self.plan.window - time.monotonic()))

    def _inject(self, planned: Planned) -> None:
        procs = self.system.procs
        if planned.kind == "worker_kill":
            procs[planned.target].kill()
            procs[planned.target].restart()
        elif planned.kind == "edge_kill":
            procs[planned.target].kill()
            time.sleep(self.plan.edge_down_seconds)
            procs[planned.target].restart()
        elif planned.kind == "rabbitmq_restart":
            self.rabbitmq.restart()
        elif planned.kind == "postgres_restart":
            self.postgres.restart()

    def ensure_running(self) -> list[str]:
        """After the faults: start whatever a failed restart left down. Returns what it had to start."""
        started = []
        for name, proc in self.system.procs.items():
            if proc.popen is None or proc.popen.poll() is not None:
                try:
                    proc.restart()
                    started.append(name)
                except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
                    started.append(f"{name} (failed: {str(exc)[:200]})")
        return started
