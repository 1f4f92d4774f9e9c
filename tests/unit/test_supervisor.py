"""lexdesk/supervisor.py with real child processes: a child that dies is restarted with backoff and
the restart is said on the console and in its log; a stop takes every child and grandchild; a child
that cannot start stops the whole start-up with its log's tail."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lexdesk.supervisor import Child, Supervisor, ensure_secrets
from tools.harness.processes import alive

SLEEPER = [sys.executable, "-c", "import time; print('sleeper up', flush=True); time.sleep(600)"]
# Starts a grandchild in its own process and sleeps: the stop must take the grandchild too.
WITH_GRANDCHILD = [sys.executable, "-c",
                   "import subprocess, sys, time, pathlib; "
                   "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                   "pathlib.Path(sys.argv[1]).write_text(str(p.pid)); time.sleep(600)"]
IGNORES_TERM = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('stubborn', flush=True); "
                "time.sleep(600)"]


def _run_in_thread(supervisor: Supervisor) -> tuple[threading.Thread, list[int]]:
    """Run the supervisor beside the test, which asks it to stop by setting `stopping` (what its
    signal handler does; handlers can only be installed in the main thread)."""
    result: list[int] = []

    def target() -> None:
        result.append(supervisor.run("BANNER"))

    thread = threading.Thread(target=target, daemon=True)
    return thread, result


def _wait(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def test_a_child_that_dies_is_restarted_with_backoff_and_it_is_said(tmp_path: Path) -> None:
    said = Recorder()
    flaky = Child("flaky", SLEEPER)
    steady = Child("steady", SLEEPER)
    supervisor = Supervisor([flaky, steady], dict(os.environ), tmp_path / "logs", out=said, stable_after=60,
                            handle_signals=False)
    thread, result = _run_in_thread(supervisor)
    thread.start()
    try:
        _wait(lambda: flaky.process is not None and steady.process is not None and flaky.started_at > 0)
        first_pid = flaky.process.pid  # type: ignore[union-attr]
        steady_pid = steady.process.pid  # type: ignore[union-attr]
        os.kill(first_pid, signal.SIGKILL)
        _wait(lambda: said.has("flaky restarted (pid"))
        assert said.has("flaky exited with signal SIGKILL")
        assert said.has("restarting in 1s")
        os.kill(flaky.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        _wait(lambda: said.has("restart 2"))
        assert said.has("restarting in 2s")  # backoff grows while it keeps dying
        assert flaky.restarts == 2
        assert steady.process.pid == steady_pid and steady.restarts == 0  # type: ignore[union-attr]
        log = (tmp_path / "logs" / "flaky.log").read_text()
        assert "sleeper up" in log and "lexdesk up: flaky exited with signal SIGKILL" in log
    finally:
        supervisor.stopping = True
        thread.join(20)
    assert result == [0]


def test_stop_takes_children_grandchildren_and_the_stubborn(tmp_path: Path) -> None:
    said = Recorder()
    grandchild_file = tmp_path / "grandchild.pid"
    parent = Child("parent", [*WITH_GRANDCHILD, str(grandchild_file)])
    stubborn = Child("stubborn", IGNORES_TERM)
    supervisor = Supervisor([parent, stubborn], dict(os.environ), tmp_path / "logs", out=said, stop_timeout=2,
                            handle_signals=False)
    thread, result = _run_in_thread(supervisor)
    thread.start()
    _wait(lambda: grandchild_file.exists() and grandchild_file.read_text()
          and "stubborn" in _read(tmp_path / "logs" / "stubborn.log"))
    grandchild = int(grandchild_file.read_text())
    supervisor.stopping = True
    thread.join(20)
    assert result == [0]
    assert parent.process.poll() is not None and stubborn.process.poll() is not None  # type: ignore[union-attr]
    _wait(lambda: not alive(grandchild), timeout=5)
    assert said.has("killed after 2s: stubborn")


def test_a_child_that_cannot_start_stops_the_start_up_with_its_log(tmp_path: Path) -> None:
    said = Recorder()
    broken = Child("broken", [sys.executable, "-c", "import sys; print('port 8080 is taken'); sys.exit(3)"],
                   health_url="http://127.0.0.1:9/healthz")
    later = Child("later", SLEEPER)
    supervisor = Supervisor([broken, later], dict(os.environ), tmp_path / "logs", out=said, handle_signals=False)
    assert supervisor.run("BANNER") == 1
    assert said.has("broken did not start: it exited with code 3")
    assert said.has("port 8080 is taken")
    assert later.process is None  # nothing after it was started


def test_secrets_file_is_private_from_creation(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = ensure_secrets(state, {})
    assert (state / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    assert ensure_secrets(state, {}) == first  # kept across starts
    assert ensure_secrets(state, {"LEXDESK_ADMIN_TOKEN": "x" * 20})["LEXDESK_ADMIN_TOKEN"] == "x" * 20


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
