"""What the bench stands on: the two backends (tools/harness/backends.py) and reading memory and
file descriptors from /proc."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterable

from tools.harness.backends import BACKENDS, PG_ADMIN_URL, Backend, backend

__all__ = ["BACKENDS", "Backend", "backend", "open_fds", "raise_fd_limit"]


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; returns the new soft limit. The
    system's processes are started afterwards and inherit it, so the edge can hold the sockets too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib(pid: int) -> int | None:
    """VmRSS of a live process in KiB (what /proc reports as kB); None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return 0  # a zombie or kernel thread has no VmRSS line


def process_group(pgid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live process in a process group. The harness starts each process
    in its own session, so its group is the process plus anything it forked (Celery's embedded beat
    runs as a child process, for instance)."""
    members: list[tuple[int, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                raw = stat.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split at the last ")".
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            members.append((int(entry), comm))
    # The leader first: pids wrap around, so a child's pid may well be the smaller one.
    return sorted(members, key=lambda member: (member[0] != pgid, member[0]))


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds so far of each of these processes that is still alive, by pid."""
    found: dict[int, float] = {}
    for pid in pids:
        seconds = cpu_seconds(pid)
        if seconds is not None:
            found[pid] = seconds
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            raw = stat.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return [part.decode(errors="replace") for part in cmdline.read().split(b"\0") if part]
    except OSError:
        return []


def processes_matching(needle: str) -> list[int]:
    """Pids whose command line contains `needle`: the PostgreSQL backends serving one database show
    its name in their process title ("postgres: postgres DB 127.0.0.1(port) idle")."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and needle in " ".join(command_line(int(entry))):
            found.append(int(entry))
    return sorted(found)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat), to tell a phase that
    saturated the machine (its own processes or anyone else's) from one that waited."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - idle) / _TICKS, total / _TICKS


def busy_percent(start: tuple[float, float], end: tuple[float, float]) -> float | None:
    """Share of all the machine's cores that was busy between two machine_cpu() readings."""
    total = end[1] - start[1]
    return round(100 * (end[0] - start[0]) / total, 1) if total > 0 else None


def postgres_commits(database: str) -> int | None:
    """Transactions committed in `database` so far (pg_stat_database; the statistics lag by up to a
    second, so read it after the load has settled)."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None
