"""A private PostgreSQL server for one chaos run: its own data directory and port, so the suite can stop
and restart it without touching the machine's shared server on 5432."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tools.chaos.commands import CommandError, as_user, give_to, run
from tools.harness.servers import free_port

USER = "postgres"
DATABASE = "lexdesk"


def _bindir() -> Path:
    """The newest installed server's binaries (Debian's layout: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        initdb = shutil.which("initdb")
        if initdb is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        return Path(initdb).parent
    return Path(found[-1]).parent


class PrivatePostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lexdesk-chaos-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.bin = _bindir()
        self.sockets.mkdir()
        give_to(USER, self.root)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _pg_ctl(self, *args: str, timeout: float = 90) -> None:
        run(as_user(USER, [str(self.bin / "pg_ctl"), "-D", str(self.data), *args]), timeout=timeout)

    def start(self) -> None:
        if not self.data.exists():
            run(as_user(USER, [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER,
                               "--no-sync", "-E", "UTF8"]), timeout=120)
        # fsync=off only matters if the machine crashes; a killed server keeps what it wrote to the OS,
        # which is the failure we inject. max_connections: every process has its own pool.
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c max_connections=400")
        self._pg_ctl("-l", str(self.log), "-w", "-t", "60", "-o", options, "start")
        self._create_database()

    def _create_database(self) -> None:
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def stop(self, mode: str = "fast") -> None:
        """`fast` closes sessions cleanly; `immediate` is a crash (recovery runs on the next start)."""
        self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_seconds: float = 2.0) -> None:
        """A crash and a restart: every open connection breaks, in-flight transactions roll back."""
        self.stop("immediate")
        time.sleep(down_seconds)
        self.start()

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def cleanup(self) -> None:
        """Stop (if running) and delete the data directory. Never raises: it runs in `finally`."""
        try:
            if self.running():
                self.stop("fast")
        except CommandError:
            try:
                self.stop("immediate")
            except CommandError:
                self._kill_postmaster()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """Last resort: the postmaster we started, by the pid it wrote (never by name)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
