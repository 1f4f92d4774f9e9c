"""`lexdesk chaos`: the whole system as real processes on a private PostgreSQL and RabbitMQ, many
conversations at once, faults injected on a schedule, then the figures from both ends.

Phases: start (private servers, then the system) → load with faults → faults off, settle (every journey
finished or waiting on something that only a replay can bring, and nothing moving) → replay dead
letters → let the replayed messages through → replay again (must do nothing) → observe → measure.
Everything is bounded by `seconds`, and every process is stopped in `finally`, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from tools.chaos.diagnose import snapshot
from tools.chaos.faults import FaultInjector
from tools.chaos.journey import Journey
from tools.chaos.measure import ReplayEvidence, measure, percentiles
from tools.chaos.observe import observe
from tools.chaos.operator import list_dead_letters, replay_dead_letters
from tools.chaos.plan import ChaosPlan
from tools.chaos.postgres import PrivatePostgres, private_postgres
from tools.chaos.rabbitmq import PrivateRabbitMQ, private_rabbitmq
from tools.chaos.report import ChaosReport, render
from tools.harness.system import System

ACTIVE = ("hello", "bot", "handoff", "agent")
WAITING_ON_OTHERS = ("handoff_failed", "final_wait", "closing")
FINISHED = ("done", "failed")


def main(conversations: int = 200, seconds: float = 600, seed: int = 1, report_path: Path | None = None, *,
         exchanges: int = 3, plan: ChaosPlan | None = None, console: Console | None = None) -> ChaosReport:
    """Run the chaos suite and print its report. `plan` overrides the other knobs (the CI run uses
    `ChaosPlan.small()`)."""
    if plan is None:
        # Faults last about as long as the conversations keep arriving (~1.6 a second at the default
        # size), and leave at least three quarters of the time bound for recovery and replay.
        default = ChaosPlan()
        window = min(default.faults.window, max(40.0, 0.75 * conversations), seconds / 4)
        plan = replace(default, conversations=conversations, seconds=seconds, seed=seed, exchanges=exchanges,
                       faults=replace(default.faults, window=window))
    console = console or Console()
    workdir = Path(tempfile.mkdtemp(prefix="lexdesk-chaos-run-"))
    began = time.monotonic()
    with _terminate_as_interrupt():
        report = _run(plan, console, workdir, began)
    render(report, console)
    if report_path is not None:
        report.write(report_path)
    return report


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C does, so the clean-up (every process, both private servers,
    their directories) runs either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(plan: ChaosPlan, console: Console, workdir: Path, began: float) -> ChaosReport:
    report: ChaosReport | None = None
    try:
        with private_postgres() as postgres, private_rabbitmq() as rabbitmq:
            try:
                console.print(f"private PostgreSQL on {postgres.port}, RabbitMQ {rabbitmq.nodename} on "
                              f"{rabbitmq.port}; starting lexdesk ({workdir})")
                with System(workdir, postgres.url, rabbitmq.url, edge_nodes=plan.edge_nodes,
                            extra_env=plan.extra_env) as system:
                    startup = time.monotonic() - began
                    report = asyncio.run(ChaosRun(system, postgres, rabbitmq, plan, console).go())
                    report.timings = {"startup": round(startup, 1), **report.timings,
                                      "total": round(time.monotonic() - began, 1)}
            finally:
                _save_server_logs(workdir / "logs", postgres, rabbitmq)
    finally:
        keep = report is None or not report.passed or plan.keep_logs
        if keep:
            if report is not None:
                report.logs_dir = str(workdir / "logs")
            else:
                console.print(f"[red]chaos run aborted[/]; process logs kept in {workdir / 'logs'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    assert report is not None
    return report


def _save_server_logs(logs: Path, postgres: PrivatePostgres, rabbitmq: PrivateRabbitMQ) -> None:
    """Before the private servers' directories go: their logs are part of the story of a failed run."""
    with contextlib.suppress(OSError):
        logs.mkdir(parents=True, exist_ok=True)
        if postgres.log.exists():
            shutil.copy(postgres.log, logs / "postgres.log")
        for log in (rabbitmq.root / "log").glob("*.log"):
            shutil.copy(log, logs / f"rabbitmq-{log.name}")


class ChaosRun:
    def __init__(self, system: System, postgres: PrivatePostgres, rabbitmq: PrivateRabbitMQ, plan: ChaosPlan,
                 console: Console) -> None:
        self.system = system
        self.postgres = postgres
        self.rabbitmq = rabbitmq
        self.plan = plan
        self.console = console
        self.last_progress = time.monotonic()
        self.journeys: list[Journey] = []
        self.timings: dict[str, object] = {}
        self.notes: list[str] = []

    def _progress(self) -> None:
        self.last_progress = time.monotonic()

    def _count(self, phases: tuple[str, ...]) -> int:
        return sum(j.record.phase in phases for j in self.journeys)

    async def go(self) -> ChaosReport:
        plan = self.plan
        started = time.monotonic()
        deadline = started + plan.seconds
        self.journeys = [Journey(i, plan, self.system.edge_urls, deadline, self._progress)
                         for i in range(plan.conversations)]
        injector = FaultInjector(self.system, self.postgres, self.rabbitmq, plan.faults, random.Random(plan.seed),
                                 lambda: self._count(ACTIVE + WAITING_ON_OTHERS))
        slot = asyncio.Semaphore(plan.concurrency)
        tasks: list[asyncio.Task[None]] = []
        ticker = asyncio.create_task(self._ticker())
        try:
            await asyncio.to_thread(injector.talkdesk_faults, True)
            tasks = [asyncio.create_task(j.run(slot), name=j.label) for j in self.journeys]
            await self._status("load and faults")
            await injector.run(started)
            await asyncio.to_thread(injector.talkdesk_faults, False)
            restarted = await asyncio.to_thread(injector.ensure_running)
            if restarted:
                self.notes.append(f"down after the faults, started again: {', '.join(restarted)}")
            faults_off = time.monotonic()
            await self._status("faults off; settling")
            await self._settle(tasks, deadline)
            ticker.cancel()
            settled = time.monotonic()
            before = await asyncio.to_thread(list_dead_letters, self.system)
            replayed_at = time.monotonic()
            first = await asyncio.to_thread(replay_dead_letters, self.system)
            await self._status(f"replayed {first.replayed} of {before.total} dead letters")
            await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
            all_done = time.monotonic()
            second = await asyncio.to_thread(replay_dead_letters, self.system)
            await asyncio.sleep(2.0)  # anything a wrong second replay set off has time to show
        finally:
            ticker.cancel()
            await asyncio.to_thread(injector.stop)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(j.customer.close() for j in self.journeys), return_exceptions=True)
        for problem in (before.error, first.error, second.error):
            if problem:
                self.notes.append(problem)
        ids = [j.customer.conversation_id or "" for j in self.journeys]
        observed = await asyncio.to_thread(observe, self.system, ids)
        figures = measure(self.journeys, observed, ReplayEvidence(before, first, second, replayed_at))
        if figures.unfinished or figures.lost:
            where = await asyncio.to_thread(snapshot, self.system, self.rabbitmq, self.system.workdir / "logs")
            self.notes.append(f"broker queues and worker thread dumps taken while still running: {where}")
        if before.available and before.total != len(observed.failed_rows) + len(observed.replayed_rows):
            self.notes.append(f"the API listed {before.total} dead letters before replay; the database has "
                              f"{len(observed.failed_rows)} failed and {len(observed.replayed_rows)} replayed rows")
        self._timings(started, faults_off, settled, all_done)
        return ChaosReport(plan.conversations, plan.exchanges, plan.seed, plan.seconds, figures,
                           faults=injector.injected, faults_planned=len(injector.planned), timings=self.timings,
                           notes=self.notes + self._failures())

    async def _status(self, what: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {what}: {self._count(ACTIVE)} active, "
                           f"{self._count(WAITING_ON_OTHERS)} waiting, {self._count(FINISHED)} finished")

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(20)
            await self._status("progress")

    async def _settle(self, tasks: list[asyncio.Task[None]], deadline: float) -> None:
        """Until every journey has finished, or those left wait on something only a replay can bring
        (an echo of a dead-lettered message) and nothing has reached any screen for `quiet_seconds`."""
        while time.monotonic() < deadline and not all(t.done() for t in tasks):
            stuck = self._count(FINISHED + WAITING_ON_OTHERS) == len(self.journeys)
            if stuck and time.monotonic() - self.last_progress > self.plan.quiet_seconds:
                return
            await asyncio.sleep(0.5)

    def _timings(self, started: float, faults_off: float, settled: float, all_done: float) -> None:
        records = [j.record for j in self.journeys]
        durations = [r.finished_at - r.started_at for r in records if r.finished_at and r.started_at]
        to_agent = [r.agent_joined_at - r.started_at for r in records if r.agent_joined_at and r.started_at]
        echoes = []
        for journey in self.journeys:
            for said in journey.record.said:
                sent = journey.sent(said)
                if said.phase == "agent" and said.answered_at and sent and sent.accepted_at:
                    echoes.append(said.answered_at - sent.accepted_at)
        self.timings.update({
            "load with faults": round(faults_off - started, 1),
            "settle": round(settled - faults_off, 1),
            "replay until all finished": round(all_done - settled, 1),
            "conversation": percentiles(durations),
            "hello to agent joined": percentiles(to_agent),
            "agent echo after accepted": percentiles(echoes),
        })

    def _failures(self) -> list[str]:
        failed = [f"{j.label}: {j.record.failure or j.record.phase}" for j in self.journeys if j.record.phase != "done"]
        if not failed:
            return []
        return [f"{len(failed)} conversations unfinished: " + "; ".join(failed[:10]) + (" ..." if len(failed) > 10
                                                                                          else "")]
