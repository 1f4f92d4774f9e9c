"""Attacks on the one-machine shape (issue 7, findings 5 and 7), on a real `lexdesk up --no-emulators`
(SQLite, the embedded broker, one worker, the HTTP app and the edge): every file its processes create is
private to the user running it, and /readyz answers "not ready" when the database cannot take a write, not
only when it cannot answer a SELECT."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tools.harness.servers import free_port
from tools.harness.system import LEXDESK, ROOT

READINESS_TIMEOUT = 1.0


@dataclass(frozen=True)
class Up:
    state: Path
    http_url: str
    edge_url: str
    admin_token: str
    output: Path


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    workdir: Path = tmp_path_factory.mktemp("embedded-hardening")
    state, output = workdir / "state", workdir / "up.out"
    http_port, edge_port = free_port(), free_port()
    nobody = f"http://127.0.0.1:{free_port()}"  # no emulators: nothing here needs Lex or Talkdesk to answer
    admin_token = secrets.token_urlsafe(24)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")},
        "LEXDESK_STATE_DIR": str(state),
        "LEXDESK_HTTP_PORT": str(http_port),
        "LEXDESK_EDGE_PORT": str(edge_port),
        "LEXDESK_ADMIN_TOKEN": admin_token,
        "LEXDESK_TALKDESK_API_URL": nobody,
        "LEXDESK_TALKDESK_AUTH_URL": nobody,
        "LEXDESK_LEX_ENDPOINT_URL": nobody,
        "LEXDESK_READINESS_TIMEOUT": str(READINESS_TIMEOUT),
    }
    with output.open("wb") as out:
        process = subprocess.Popen([*LEXDESK, "up", "--no-emulators", "--concurrency", "2"], cwd=ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "lexdesk is up." not in output.read_text(errors="replace"):
            assert process.poll() is None, f"lexdesk up exited with {process.returncode}:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"lexdesk up did not come up:\n{output.read_text()}"
            time.sleep(0.2)
        yield Up(state, f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{edge_port}/ws", admin_token, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C: everything stops within about 4 s
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def test_every_file_the_processes_create_is_private(up: Up) -> None:
    async def use_it() -> None:  # rows in the database, messages through the broker, lines in the logs
        async with connect(up.edge_url, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "hello"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
            await ws.send(json.dumps({"type": "message", "id": "m-1", "text": "what is my balance"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "accepted", "id": "m-1"}

    asyncio.run(use_it())
    with httpx.Client(base_url=up.http_url, headers={"Authorization": f"Bearer {up.admin_token}"}) as admin:
        assert admin.get("/api/conversations").status_code == 200
    time.sleep(2.5)  # a sweep or two by the worker's beat (its schedule file is one of the files)

    files = {p.relative_to(up.state).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in up.state.rglob("*") if p.is_file()}
    assert {"lexdesk.sqlite", "lexdesk.sqlite-wal", "broker.sqlite", "secrets.json"} <= set(files), files
    assert any(name.startswith("logs/") for name in files), files
    readable_by_others = {name: oct(mode) for name, mode in files.items() if mode & 0o077}
    assert not readable_by_others, readable_by_others
    folders = {p.relative_to(up.state).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
               for p in [up.state, *up.state.rglob("*")] if p.is_dir()}
    assert all(int(mode, 8) & 0o077 == 0 for mode in folders.values()), folders


def test_readyz_is_not_ready_while_the_database_cannot_take_a_write(up: Up) -> None:
    with httpx.Client(base_url=up.http_url, headers={"Authorization": f"Bearer {up.admin_token}"},
                      timeout=10) as admin:
        # (Only the database check matters here: the others, the sweep's age say, may not be ok yet.)
        assert admin.get("/readyz").json()["checks"]["database"] == "ok"
        # Another connection holds SQLite's write lock: reads still work, writes must wait.
        holder = sqlite3.connect(up.state / "lexdesk.sqlite", isolation_level=None, timeout=10)
        try:
            holder.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            response = admin.get("/readyz")
            waited = time.monotonic() - started
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["status"] == "not_ready" and "locked" in body["checks"]["database"], body
            assert waited < READINESS_TIMEOUT + 3, waited
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        deadline = time.monotonic() + 10
        while (response := admin.get("/readyz")).json()["checks"]["database"] != "ok":
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)
