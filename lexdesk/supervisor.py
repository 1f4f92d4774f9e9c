"""`lexdesk up`: every part of the system as child processes of one command, stopped together."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import Settings


@dataclass
class Child:
    name: str
    argv: list[str]
    health_url: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def ensure_secrets(state_dir: Path, environ: dict[str, str]) -> dict[str, str]:
    """Keys `lexdesk up` generates once and keeps in the state directory (mode 600), so a restart
    keeps the customers' resume tokens and Talkdesk's configured key valid."""
    path = state_dir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for name in ("LEXDESK_CALLBACK_API_KEY", "LEXDESK_ADMIN_TOKEN", "LEXDESK_RESUME_TOKEN_SECRET", "LEXDESK_DATA_KEY"):
        stored.setdefault(name, secrets.token_urlsafe(32))
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=2))
    path.chmod(0o600)
    return {name: environ.get(name) or value for name, value in stored.items()}


def plan(settings: Settings, with_emulators: bool, concurrency: int) -> list[Child]:
    python = [sys.executable, "-m", "lexdesk"]
    callback_url = f"http://{settings.http_host}:{settings.http_port}"
    children = []
    if with_emulators:
        children += [
            Child("talkdesk-emulator", [*python, "emulate", "talkdesk", "--port", _port(settings.talkdesk_api_url),
                                        "--callback-url", callback_url],
                  f"{settings.talkdesk_api_url}/healthz"),
            Child("lex-emulator", [*python, "emulate", "lex", "--port", _port(settings.lex_endpoint_url or "")],
                  f"{settings.lex_endpoint_url}/healthz"),
        ]
    schedule = str(settings.state_dir / "celerybeat-schedule")
    children += [
        Child("worker", [*python, "worker", "-Q", "routing,lex,talkdesk,timers", "--pool", "threads",
                         "--concurrency", str(concurrency), "--beat", "--schedule", schedule, "--loglevel", "INFO"]),
        Child("callback", [*python, "callback"], f"{callback_url}/healthz"),
        Child("edge", [*python, "edge"]),
    ]
    return children


def _port(url: str) -> str:
    return str(httpx.URL(url).port or 80)


def run(children: list[Child], environ: dict[str, str], banner: str, log_dir: Path) -> int:
    log_dir.mkdir(parents=True, exist_ok=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for child in children:
            log = (log_dir / f"{child.name}.log").open("ab")
            child.process = subprocess.Popen(child.argv, env=environ, stdout=log, stderr=subprocess.STDOUT)
            if child.health_url:
                _wait_healthy(child)
        print(banner, flush=True)
        while not stopping:
            for child in children:
                assert child.process is not None
                if child.process.poll() is not None:
                    print(f"lexdesk: {child.name} exited with {child.process.returncode}; "
                          f"see {log_dir / (child.name + '.log')}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        for child in reversed(children):
            if child.process and child.process.poll() is None:
                child.process.terminate()
        for child in children:
            if child.process:
                try:
                    child.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.process.kill()


def _wait_healthy(child: Child, timeout: float = 30.0) -> None:
    assert child.health_url and child.process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited during start-up with {child.process.returncode}")
        try:
            if httpx.get(child.health_url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer {child.health_url} within {timeout:.0f}s")
