"""`lexdesk up`: every part of the system as child processes of one command.

- Each child runs in its own session (process group), so a Ctrl-C in the terminal reaches only this
  supervisor, which then stops the children itself: SIGTERM to each group, SIGKILL to what is left
  after `stop_timeout`. Grandchildren (anything a child forked) go with their group.
- A child that dies after start-up is restarted with exponential backoff (reset once it has stayed up
  for a while); each exit and restart is printed and written into the child's own log, so a log is
  never silently empty.
- A child that cannot start (it exits, or never answers its health check) stops everything with the
  tail of its log: nothing is "up" until every part is.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import httpx

from shared.settings import Settings

SECRET_NAMES = ("LEXDESK_CALLBACK_API_KEY", "LEXDESK_ADMIN_TOKEN", "LEXDESK_RESUME_TOKEN_SECRET", "LEXDESK_DATA_KEY")


@dataclass
class Child:
    name: str
    argv: list[str]
    health_url: str | None = None  # answers 200 once the child is ready
    # Sent when a stop is half-way through `stop_timeout` and the child is still there: Celery's
    # warm shutdown (SIGTERM) waits on its pool; SIGQUIT is its cold shutdown, which hands unacked
    # messages back (late acks: nothing is lost, the sweep recovers the rest).
    hurry_signal: int | None = None
    tcp_port: int | None = None  # accepts a connection once the child is ready
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0  # exits in a row without staying up for `stable_after`
    restart_at: float | None = None  # set while a restart is pending


def ensure_secrets(state_dir: Path, environ: dict[str, str]) -> dict[str, str]:
    """Keys `lexdesk up` generates once and keeps in the state directory (mode 600 from creation), so a
    restart keeps the customers' resume tokens and Talkdesk's configured key valid."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    path = state_dir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for name in SECRET_NAMES:
        stored.setdefault(name, secrets.token_urlsafe(32))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(stored, out, indent=2)
    return {name: environ.get(name) or value for name, value in stored.items()}


def plan(settings: Settings, with_emulators: bool, concurrency: int) -> list[Child]:
    python = [sys.executable, "-m", "lexdesk"]
    callback_url = f"http://{settings.http_host}:{settings.http_port}"
    children = []
    if with_emulators:
        children += [
            # The state file keeps open agent chats across a restart of `lexdesk up` (or of the child).
            Child("talkdesk-emulator", [*python, "emulate", "talkdesk", "--port", _port(settings.talkdesk_api_url),
                                        "--callback-url", callback_url,
                                        "--state-file", str(settings.state_dir / "talkdesk-emulator.sqlite3")],
                  health_url=f"{settings.talkdesk_api_url}/healthz"),
            Child("lex-emulator", [*python, "emulate", "lex", "--port", _port(settings.lex_endpoint_url or "")],
                  health_url=f"{settings.lex_endpoint_url}/healthz"),
        ]
    children += [
        # It consumes `timers`, so it runs the periodic jobs too (shared/periodic.py): no beat needed.
        Child("worker", [*python, "worker", "-Q", "routing,lex,talkdesk,timers", "--pool", "threads",
                         "--concurrency", str(concurrency), "--loglevel", "INFO"],
              hurry_signal=signal.SIGQUIT),
        Child("callback", [*python, "callback"], health_url=f"{callback_url}/healthz"),
        Child("edge", [*python, "edge"], tcp_port=settings.edge_port),
    ]
    return children


def _port(url: str) -> str:
    return str(httpx.URL(url).port or 80)


class Supervisor:
    def __init__(self, children: list[Child], environ: dict[str, str], log_dir: Path, *,
                 stop_timeout: float = 4.0, start_timeout: float = 60.0, backoff_max: float = 30.0,
                 stable_after: float = 60.0, out: Callable[[str], None] | None = None,
                 handle_signals: bool = True) -> None:
        self.children = children
        self.environ = environ
        self.log_dir = log_dir
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.out = out or (lambda line: print(line, file=sys.stderr, flush=True))
        self.handle_signals = handle_signals  # only the main thread may; tests set `stopping` instead
        self.stopping = False

    def run(self, banner: str) -> int:
        """Start every child, print `banner`, keep them running until SIGINT/SIGTERM. The exit code is
        0 after a requested stop, 1 if the system could not start."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.chmod(0o700)
        previous = ({sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
                    if self.handle_signals else {})
        try:
            for child in self.children:
                self._start(child)
                problem = self._wait_ready(child)
                if problem:
                    if self.stopping:
                        return 0
                    self.out(f"lexdesk: {child.name} did not start: {problem}; last lines of "
                             f"{self._log_path(child)}:\n{self._tail(child)}")
                    return 1
            print(banner, flush=True)
            while not self.stopping:
                self._watch()
                time.sleep(0.2)
            return 0
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request_stop(self, *_: object) -> None:
        self.stopping = True

    def _log_path(self, child: Child) -> Path:
        return self.log_dir / f"{child.name}.log"

    def _note(self, child: Child, line: str) -> None:
        """Say it on the console and in the child's own log."""
        self.out(f"lexdesk: {line}")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with self._open_log(child) as log:
            log.write(f"{stamp} lexdesk up: {line}\n".encode())

    def _open_log(self, child: Child) -> BinaryIO:
        descriptor = os.open(self._log_path(child), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(descriptor, "ab")

    def _start(self, child: Child) -> None:
        with self._open_log(child) as log:
            child.process = subprocess.Popen(child.argv, env=self.environ, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        child.started_at = time.monotonic()
        child.restart_at = None

    def _wait_ready(self, child: Child) -> str | None:
        assert child.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline and not self.stopping:
            code = child.process.poll()
            if code is not None:
                return f"it exited with {_describe(code)}"
            if _is_ready(child):
                return None
            time.sleep(0.1)
        return "stopped while starting" if self.stopping else f"not ready within {self.start_timeout:.0f}s"

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            assert child.process is not None
            if child.restart_at is None:
                code = child.process.poll()
                if code is None:
                    continue
                uptime = now - child.started_at
                child.failures = 1 if uptime >= self.stable_after else child.failures + 1
                delay = min(self.backoff_max, 2.0 ** (child.failures - 1))
                child.restart_at = now + delay
                self._kill_group(child, signal.SIGKILL)  # whatever it forked goes too
                self._note(child, f"{child.name} exited with {_describe(code)} after {uptime:.1f}s; restarting "
                                  f"in {delay:.0f}s (log: {self._log_path(child)})")
            elif now >= child.restart_at:
                child.restarts += 1
                self._start(child)
                assert child.process is not None
                self._note(child, f"{child.name} restarted (pid {child.process.pid}, restart {child.restarts})")

    def _stop_all(self) -> None:
        running = [c for c in self.children if c.process is not None]
        if not running:
            return
        began = time.monotonic()
        self.out("lexdesk: stopping ...")
        for child in reversed(running):
            self._kill_group(child, signal.SIGTERM)
        self._wait_exit(running, began + self.stop_timeout / 2)
        for child in running:
            assert child.process is not None
            if child.hurry_signal is not None and child.process.poll() is None:
                self._kill_group(child, child.hurry_signal)
        self._wait_exit(running, began + self.stop_timeout)
        killed = []
        for child in running:
            assert child.process is not None
            if child.process.poll() is None:
                killed.append(child.name)
            self._kill_group(child, signal.SIGKILL)  # the group's stragglers, and a leader that ignored TERM
            child.process.wait()
        suffix = f"; killed after {self.stop_timeout:.0f}s: {', '.join(killed)}" if killed else ""
        self.out(f"lexdesk: stopped {len(running)} processes in {time.monotonic() - began:.1f}s{suffix}")

    @staticmethod
    def _wait_exit(children: list[Child], deadline: float) -> None:
        for child in children:
            assert child.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.0, deadline - time.monotonic()))

    @staticmethod
    def _kill_group(child: Child, sig: int) -> None:
        if child.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)

    def _tail(self, child: Child, lines: int = 20) -> str:
        path = self._log_path(child)
        if not path.exists():
            return "(no log)"
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _is_ready(child: Child) -> bool:
    if child.health_url:
        try:
            return httpx.get(child.health_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    if child.tcp_port:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", child.tcp_port)) == 0
    return True
