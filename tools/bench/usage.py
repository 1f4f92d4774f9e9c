"""CPU and memory of the system's processes, from /proc. CPU is counted over the load phases only
(bot, handoff, agent): with latency in seconds, it tells whether the time went into computing (a
process near 100% of a core) or into waiting (locks, polling, queues)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from tools.bench import infra
from tools.bench.report import ProcessUsage
from tools.harness.system import System

# What ships: the processes a deployment runs (the emulators and the bench stand in for the outside).
PRODUCT = ("edge-", "callback", "worker-")
DATABASE, RABBITMQ = "postgresql backends", "rabbitmq (shared)"
# A PostgreSQL backend that goes idle publishes its pending statistics (pg_stat_database) within about
# ten seconds, not at commit; reading sooner would move commits from one window to the next.
PG_STATS_LAG = 11.0


@dataclass(frozen=True)
class Watched:
    label: str
    group: str  # the harness's name of the process (or of its parent), or a group of processes
    pids: tuple[int, ...]
    command: str
    has_rss: bool  # False where RSS would mislead (PostgreSQL backends all map the shared buffers)


class Usage:
    def __init__(self, system: System, database: str | None, rabbitmq: bool) -> None:
        self.system, self.database, self.rabbitmq = system, database, rabbitmq
        self._cpu_at_start: dict[int, float] = {}
        self._started: float | None = None
        self._wall = 0.0
        self._cpu_at_end: dict[int, float] = {}
        self._commits: list[int | None] = []

    def watched(self) -> list[Watched]:
        rows: list[Watched] = []
        for name, proc in self.system.procs.items():
            if proc.popen is None:
                continue
            for pid, comm in infra.process_group(proc.popen.pid):
                label = name if pid == proc.popen.pid else "  └ child"  # Celery's embedded beat, say
                rows.append(Watched(label, name, (pid,), _command(pid, comm), True))
        if self.database:
            pids = tuple(infra.processes_matching(f" {self.database} "))
            rows.append(Watched(DATABASE, DATABASE, pids, f"{len(pids)} backends of {self.database}", False))
        if self.rabbitmq:
            pids = tuple(infra.processes_matching("beam.smp"))
            rows.append(Watched(RABBITMQ, RABBITMQ, pids, "beam.smp: the whole broker, other vhosts too", True))
        rows.append(Watched("bench client", "bench client", (os.getpid(),), "this process: customers, idle sockets",
                            True))
        return rows

    def cpu_by_pid(self) -> dict[int, float]:
        """CPU seconds so far of every watched process, by pid."""
        return infra.cpu_by_pid(pid for row in self.watched() for pid in row.pids)

    def start(self) -> None:
        """Blocking (it may wait for PostgreSQL's statistics): call it off the event loop."""
        if self.database:
            time.sleep(PG_STATS_LAG)  # let what came before the load reach the statistics first
            self._commits = [infra.postgres_commits(self.database)]
        self._cpu_at_start, self._started = self.cpu_by_pid(), time.perf_counter()

    def stop(self) -> None:
        """Blocking, like start()."""
        if self._started is not None:
            self._cpu_at_end, self._wall = self.cpu_by_pid(), time.perf_counter() - self._started
            if self.database:
                time.sleep(PG_STATS_LAG)
                self._commits.append(infra.postgres_commits(self.database))

    @property
    def database_commits(self) -> int | None:
        """Transactions the database committed during the load phases (PostgreSQL only)."""
        if len(self._commits) == 2 and self._commits[0] is not None and self._commits[1] is not None:
            return self._commits[1] - self._commits[0]
        return None

    @property
    def load_seconds(self) -> float:
        return self._wall

    def report(self) -> list[ProcessUsage]:
        """RSS now; CPU between start() and stop() (a process born in between counts from zero)."""
        usage = []
        for row in self.watched():
            cpu = None
            if self._cpu_at_end:
                cpu = sum(self._cpu_at_end[p] - self._cpu_at_start.get(p, 0.0) for p in row.pids
                          if p in self._cpu_at_end)
            rss = sum(infra.rss_kib(p) or 0 for p in row.pids) if row.has_rss else None
            usage.append(ProcessUsage(
                name=row.label, group=row.group, product=row.group.startswith(PRODUCT),
                pid=row.pids[0] if len(row.pids) == 1 else None, command=row.command, rss_kib=rss,
                cpu_seconds=None if cpu is None else round(cpu, 2),
                cpu_percent=None if cpu is None or self._wall <= 0 else round(100 * cpu / self._wall, 1)))
        return usage


def _command(pid: int, fallback: str) -> str:
    """The command line without the interpreter's path."""
    argv = infra.command_line(pid)
    return " ".join(argv[1:]) if len(argv) > 1 else fallback
