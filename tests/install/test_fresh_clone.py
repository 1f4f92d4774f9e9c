"""The README's first command, the way a new user meets it: a fresh clone, `./scripts/up.sh` building
its own virtual environment with no extras, the chat page, one bot turn over the WebSocket, a child
that dies and comes back, Ctrl-C, and a second start that installs nothing.

It installs lexdesk from the package registries into a new virtual environment, so it is slow: it
runs once, as one test, and everything it proves about the plain install is proven here."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tools.harness.processes import alive, descendants
from tools.harness.servers import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)


class UpProcess:
    """`./scripts/up.sh` running in the background, its output collected line by line."""

    def __init__(self, clone: Path, env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(["./scripts/up.sh"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.popen.poll() is not None:
                time.sleep(0.2)  # let the reader take the last lines
                raise AssertionError(f"up.sh exited with {self.popen.returncode} before {text!r}:\n{self.output}")
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} within {timeout:.0f}s:\n{self.output}")

    def interrupt(self, timeout: float = 15.0) -> float:
        """Ctrl-C (SIGINT to the supervisor, as a terminal sends it); how long it took to exit."""
        began = time.monotonic()
        self.popen.send_signal(signal.SIGINT)
        code = self.popen.wait(timeout)
        took = time.monotonic() - began
        self._reader.join(5)
        assert code == 0, f"lexdesk up exited with {code} after Ctrl-C:\n{self.output}"
        return took

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


def _pid_of(name: str, descendants: set[int]) -> int:
    """The child of `lexdesk up` whose command line names `name` (e.g. 'emulate lex')."""
    for pid in descendants:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if name.encode() in b" ".join(argv):
            return pid
    raise AssertionError(f"no child process runs {name!r}")


async def _bot_turn(edge_url: str) -> list[dict[str, object]]:
    async with connect(edge_url) as ws:
        await ws.send(json.dumps({"type": "hello", "customer": {"name": "New User"}}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["state"] == "bot", welcome
        await ws.send(json.dumps({"type": "message", "id": "m-1", "text": "what is my balance"}))
        frames: list[dict[str, object]] = []
        async with asyncio.timeout(30):
            while not any(f.get("type") == "message" and f.get("from") == "bot" for f in frames):
                frames.append(json.loads(await ws.recv()))
        return frames


async def _frames_until(ws: object, done: object, timeout: float = 30) -> list[dict[str, object]]:
    """Read frames, acknowledging each seq, until `done(frames)`."""
    frames: list[dict[str, object]] = []
    async with asyncio.timeout(timeout):
        while not done(frames):  # type: ignore[operator]
            frame = json.loads(await ws.recv())  # type: ignore[attr-defined]
            frames.append(frame)
            if isinstance(frame.get("seq"), int):
                await ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))  # type: ignore[attr-defined]
    return frames


def _from_agent(text: str) -> object:
    return lambda frames: any(f.get("from") == "agent" and text in str(f.get("text")) for f in frames)


async def _open_agent_chat(edge_url: str) -> tuple[str, int]:
    """A chat handed to the (emulated) agent, left open: its resume token and the last seq shown."""
    async with connect(edge_url) as ws:
        await ws.send(json.dumps({"type": "hello", "customer": {"name": "Kept Open"}}))
        welcome = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "message", "id": "agent-1", "text": "I want to talk to an agent"}))
        frames = await _frames_until(ws, _from_agent("How can I help"))
        await ws.send(json.dumps({"type": "message", "id": "agent-2", "text": "before the restart"}))
        frames += await _frames_until(ws, _from_agent("You said: before the restart"))
        return str(welcome["resume_token"]), max(int(f["seq"]) for f in frames if isinstance(f.get("seq"), int))


async def _carry_on(edge_url: str, token: str, last_seq: int) -> list[dict[str, object]]:
    async with connect(edge_url) as ws:
        await ws.send(json.dumps({"type": "resume", "resume_token": token, "last_seq": last_seq}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["state"] == "agent_active", welcome
        await ws.send(json.dumps({"type": "message", "id": "agent-3", "text": "after the restart"}))
        return await _frames_until(ws, _from_agent("You said: after the restart"))


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("fresh") / "lexdesk"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(target)], check=True)
    # A developer's run tests what they are about to commit: the changes to tracked (and staged new)
    # files on top of HEAD. In CI the tree is a clean clone and there is nothing to apply.
    changes = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=REPO, capture_output=True, check=True).stdout
    if changes:
        subprocess.run(["git", "apply", "--index"], cwd=target, input=changes, check=True)
    yield target


def test_a_new_user_runs_the_first_command(clone: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    http_port, edge_port, talkdesk_port, lex_port = (free_port() for _ in range(4))
    env = {
        # A user's shell: nothing of ours, nothing of the test run's virtual environment.
        **{k: v for k, v in os.environ.items()
           if not k.startswith(("LEXDESK_", "VIRTUAL_ENV", "PYTHON", "PYTEST", "COV_"))},
        "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(sys.prefix)),
        "LEXDESK_STATE_DIR": str(state),
        "LEXDESK_HTTP_PORT": str(http_port),
        "LEXDESK_EDGE_PORT": str(edge_port),
        "LEXDESK_TALKDESK_API_URL": f"http://127.0.0.1:{talkdesk_port}",
        "LEXDESK_TALKDESK_AUTH_URL": f"http://127.0.0.1:{talkdesk_port}",
        "LEXDESK_LEX_ENDPOINT_URL": f"http://127.0.0.1:{lex_port}",
    }
    venv = clone / ".venv"

    up = UpProcess(clone, env)
    try:
        up.wait_for("lexdesk is up.", timeout=600)
        assert "installing lexdesk" in up.output
        page = httpx.get(f"http://127.0.0.1:{http_port}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        frames = asyncio.run(_bot_turn(f"ws://127.0.0.1:{edge_port}/ws"))
        assert {"type": "accepted", "id": "m-1"} in frames
        bot = next(f for f in frames if f.get("type") == "message")
        assert "checking or savings" in str(bot["text"]).lower()

        # One child dying (an emulator) does not stop the system: it is restarted, and it is said.
        children = descendants(up.popen.pid)
        lex = _pid_of("emulate lex", children)
        os.kill(lex, signal.SIGKILL)
        up.wait_for("lex-emulator restarted", timeout=30)
        assert "lex-emulator exited with signal SIGKILL" in up.output
        assert "lex-emulator exited with signal SIGKILL" in (state / "logs" / "lex-emulator.log").read_text()
        up.wait_for("lexdesk is up.", timeout=1)
        again = asyncio.run(_bot_turn(f"ws://127.0.0.1:{edge_port}/ws"))  # the restarted emulator answers
        assert any(f.get("type") == "message" and f.get("from") == "bot" for f in again)

        # An agent chat left open across the restart below.
        token, last_seq = asyncio.run(_open_agent_chat(f"ws://127.0.0.1:{edge_port}/ws"))

        # Ctrl-C: every child and grandchild (Celery's beat) gone, exit 0.
        children = descendants(up.popen.pid)
        assert len(children) >= 5, children
        took = up.interrupt()
        print(f"Ctrl-C to exit: {took:.1f}s")
        left = [pid for pid in children if alive(pid)]
        assert not left, f"still running after Ctrl-C: {left}"
        assert "stopped" in up.output
    finally:
        up.kill()

    # Every service wrote its start to its log.
    logs = state / "logs"
    assert "Uvicorn running" in (logs / "talkdesk-emulator.log").read_text()
    assert "Uvicorn running" in (logs / "lex-emulator.log").read_text()
    assert "Uvicorn running" in (logs / "callback.log").read_text()
    assert "edge_listening" in (logs / "edge.log").read_text()
    assert "ready." in (logs / "worker.log").read_text()

    # A second start reinstalls nothing and comes up again on the same state.
    again = UpProcess(clone, env)
    try:
        again.wait_for("lexdesk is up.", timeout=120)
        assert "installing" not in again.output
        assert httpx.get(f"http://127.0.0.1:{http_port}/", timeout=10).status_code == 200
        # The chat carries on: the Talkdesk emulator kept it in the state directory.
        carried = asyncio.run(_carry_on(f"ws://127.0.0.1:{edge_port}/ws", token, last_seq))
        assert {"type": "accepted", "id": "agent-3"} in carried
        assert {"type": "status", "id": "agent-3", "status": "delivered"} in carried
        assert (state / "talkdesk-emulator.sqlite3").exists()
        again.interrupt()
    finally:
        again.kill()

    # The plain install holds the product only: no test tools, and they say which extra brings them.
    lexdesk = [str(venv / "bin" / "lexdesk")]
    tool = subprocess.run([*lexdesk, "bench"], capture_output=True, text=True, env=env, timeout=60)
    assert tool.returncode == 2
    assert tool.stderr.strip().count("\n") == 0 and "'.[tools]'" in tool.stderr, tool.stderr
    listed = subprocess.run([*lexdesk, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0 and " up " in listed.stdout and " bench " not in listed.stdout
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.util as u; "
                            "print(u.find_spec('hypothesis') is None and u.find_spec('schemathesis') is None)"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert probe.stdout.strip() == "True", "the plain install pulled in a test dependency"

    # `pip install .` (not editable) carries everything the product reads at run time: the migrations,
    # the bots, the pages. Run from outside the clone so that nothing is found by accident.
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    "."], cwd=clone, check=True, env=env, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plain_env = {**env, "LEXDESK_DATABASE_URL": f"sqlite:///{elsewhere / 'plain.sqlite'}"}
    migrated = subprocess.run([*lexdesk, "migrate"], cwd=elsewhere, capture_output=True, text=True,
                              env=plain_env, timeout=120)
    assert migrated.returncode == 0 and "database at head" in migrated.stdout, migrated.stderr
    probe = "import services.callback.app as a, emulators.lex.app as e; print(a.__file__, e.__file__)"
    located = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=elsewhere, capture_output=True,
                             text=True, env=env, timeout=60)
    assert all("/site-packages/" in path for path in located.stdout.split()), located.stdout
    for command in (["emulate", "lex", "--help"], ["emulate", "talkdesk", "--help"], ["dead-letters", "--help"],
                    ["replay", "--help"], ["worker", "--help"], ["edge", "--help"], ["callback", "--help"]):
        shown = subprocess.run([*lexdesk, *command], cwd=elsewhere, capture_output=True, text=True, env=env,
                               timeout=60)
        assert shown.returncode == 0, (command, shown.stderr)

