"""What the bench stands on: the two backends (a throwaway SQLite + embedded broker, or a throwaway
database and vhost on the machine's PostgreSQL and RabbitMQ), and reading memory from /proc."""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RABBITMQ_HOST = "127.0.0.1:5672"
BACKENDS = ("embedded", "postgres")


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    broker_url: str
    worker_queues: tuple[str, ...]
    database: str | None = None  # the PostgreSQL database, to find its backends' processes
    rabbitmq: bool = False


@contextlib.contextmanager
def backend(name: str, workdir: Path) -> Iterator[Backend]:
    """Yield the URLs for `name`; whatever was created for the run is removed afterwards."""
    if name == "embedded":
        # One worker process for every queue: the one-machine default of `lexdesk up`.
        yield Backend(name, f"sqlite:///{workdir / 'lexdesk.sqlite'}", f"sqla+sqlite:///{workdir / 'broker.sqlite'}",
                      ("routing,lex,talkdesk,timers",))
        return
    if name != "postgres":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    import psycopg

    suffix = secrets.token_hex(4)
    database, vhost = f"lexdesk_bench_{suffix}", f"lexdesk-bench-{suffix}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        _rabbitmqctl("add_vhost", vhost)
        try:
            _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            # The production shape: one worker process per queue.
            yield Backend(name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
                          f"amqp://guest:guest@{RABBITMQ_HOST}/{vhost}", ("routing", "lex", "talkdesk", "timers"),
                          database=database, rabbitmq=True)
        finally:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60, check=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed (is RabbitMQ running on {RABBITMQ_HOST}?): "
                           f"{result.stderr.strip() or result.stdout.strip()}")


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
