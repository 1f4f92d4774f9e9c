"""The whole system as real processes for integration tests: both emulators, the callback app, N
edge nodes and Celery workers (one process per queue group), each logging to its own file."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.migrate import upgrade
from tools.harness.servers import free_port

ROOT = Path(__file__).resolve().parents[2]  # the checkout: processes run from it
LEXDESK = [sys.executable, "-m", "lexdesk"]


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready: str  # "http:URL", "tcp:PORT" or "log:TEXT"
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} during start-up:\n{self.tail()}")
            if self._is_ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready within {timeout:.0f}s:\n{self.tail()}")

    def _is_ready(self) -> bool:
        kind, _, target = self.ready.partition(":")
        if kind == "http":
            try:
                return httpx.get(target, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        if kind == "tcp":
            with socket.socket() as sock:
                sock.settimeout(0.5)
                return sock.connect_ex(("127.0.0.1", int(target))) == 0
        # Only what this run of the process wrote counts; the log file is appended to across restarts.
        return target in self.log_path.read_text(errors="replace")[self._log_offset:]

    _log_offset: int = 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.start()

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class System:
    """Start with `with System(...) as system:`; everything is stopped on exit."""

    def __init__(self, workdir: Path, database_url: str, broker_url: str, *, edge_nodes: int = 1,
                 worker_queues: Sequence[str] = ("routing", "lex", "talkdesk", "timers"),
                 agent_join_delay: float = 0.3, extra_env: dict[str, str] | None = None,
                 lex_args: Sequence[str] = (), scripted_agent: bool = True) -> None:
        self.workdir = workdir
        self.api_key = secrets.token_urlsafe(16)
        self.admin_token = secrets.token_urlsafe(16)
        self.talkdesk_url = f"http://127.0.0.1:{free_port()}"
        self.lex_url = f"http://127.0.0.1:{free_port()}"
        self.http_url = f"http://127.0.0.1:{free_port()}"
        self.database_url = database_url
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")},
            "LEXDESK_STATE_DIR": str(workdir / "state"),
            "LEXDESK_DATABASE_URL": database_url,
            "LEXDESK_BROKER_URL": broker_url,
            "LEXDESK_HTTP_PORT": self.http_url.rsplit(":", 1)[1],
            "LEXDESK_CALLBACK_API_KEY": self.api_key,
            "LEXDESK_ADMIN_TOKEN": self.admin_token,
            "LEXDESK_RESUME_TOKEN_SECRET": secrets.token_urlsafe(16),
            "LEXDESK_DATA_KEY": secrets.token_urlsafe(16),
            "LEXDESK_TALKDESK_API_URL": self.talkdesk_url,
            "LEXDESK_TALKDESK_AUTH_URL": self.talkdesk_url,
            "LEXDESK_LEX_ENDPOINT_URL": self.lex_url,
            "LEXDESK_RETRY_BACKOFF_BASE": "0.2",
            "LEXDESK_SWEEP_INTERVAL": "2",
            # Every client of a harnessed system is 127.0.0.1: one address standing for all the customers
            # of a test, a bench or a fuzz run, so the per-address limits are raised out of the way here
            # (tests/integration/test_edge_limits.py runs its own system with them tight). The fuzzer
            # keeps a socket without hello for as long as it takes to draw one.
            **{f"LEXDESK_{name}": "1000000" for name in (
                "ADDRESS_MAX_SOCKETS", "ADDRESS_MAX_UNSTARTED_SOCKETS", "ADDRESS_NEW_SOCKETS",
                "ADDRESS_NEW_CONVERSATIONS", "RATE_LIMIT_ADDRESS_MESSAGES")},
            "LEXDESK_HELLO_TIMEOUT": "3600",
            "LEXDESK_FORWARD_CUSTOMER_TYPING": "true",  # the emulator serves the call
            **(extra_env or {}),
        }
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        talkdesk_port, lex_port = self.talkdesk_url.rsplit(":", 1)[1], self.lex_url.rsplit(":", 1)[1]
        self.procs: dict[str, Proc] = {
            "talkdesk": Proc("talkdesk", [*LEXDESK, "emulate", "talkdesk", "--port", talkdesk_port,
                                          "--callback-url", self.http_url, "--callback-api-key", self.api_key,
                                          "--agent-join-delay", str(agent_join_delay),
                                          *([] if scripted_agent else ["--no-scripted-agent"])],
                             self.env, logs / "talkdesk.log", f"http:{self.talkdesk_url}/healthz"),
            "lex": Proc("lex", [*LEXDESK, "emulate", "lex", "--port", lex_port, *lex_args], self.env, logs / "lex.log",
                        f"http:{self.lex_url}/healthz"),
            "callback": Proc("callback", [*LEXDESK, "callback"], self.env, logs / "callback.log",
                             f"http:{self.http_url}/healthz"),
        }
        self.edge_urls: list[str] = []
        for index in range(edge_nodes):
            port = free_port()
            env = {**self.env, "LEXDESK_EDGE_PORT": str(port), "LEXDESK_NODE_ID": f"edge-{index}"}
            self.procs[f"edge-{index}"] = Proc(f"edge-{index}", [*LEXDESK, "edge"], env, logs / f"edge-{index}.log",
                                               f"tcp:{port}")
            self.edge_urls.append(f"ws://127.0.0.1:{port}/ws")
        if self.edge_urls and "LEXDESK_PUBLIC_EDGE_URL" not in self.env:
            # The chat page the callback app serves connects to the first edge node.
            callback = self.procs["callback"]
            callback.env = {**callback.env, "LEXDESK_PUBLIC_EDGE_URL": self.edge_urls[0]}
        for queues in worker_queues:
            name = f"worker-{queues.replace(',', '-')}"
            if name in self.procs:  # a second worker for the same queues: number it
                name = f"{name}-{sum(n.startswith(name) for n in self.procs) + 1}"
            # No beat: every timers worker runs the periodic jobs, one run at a time (shared/periodic.py).
            argv = [*LEXDESK, "worker", "-Q", queues, "--pool", "threads", "--concurrency", "4",
                    "--hostname", f"{name}@%h", "--loglevel", "INFO"]
            self.procs[name] = Proc(name, argv, self.env, logs / f"{name}.log", "log:ready.")

    def __enter__(self) -> System:
        upgrade(self.database_url)
        try:
            for proc in self.procs.values():
                proc.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def logs(self) -> str:
        return "\n\n".join(f"==== {p.name}\n{p.tail()}" for p in self.procs.values())

    # -- conveniences for tests ---------------------------------------------------------------------

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.http_url, headers={"Authorization": f"Bearer {self.admin_token}"},
                            timeout=10)

    def talkdesk(self) -> httpx.Client:
        return httpx.Client(base_url=self.talkdesk_url, timeout=10)

    def callback(self) -> httpx.Client:
        return httpx.Client(base_url=self.http_url, headers={"X-Api-Key": self.api_key}, timeout=10)
