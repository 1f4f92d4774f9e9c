"""The Talkdesk emulator's state file: a real emulator process, SIGKILLed and started again on the same
file, carries on with its conversations, tokens, idempotency keys and undelivered agent messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from emulators.talkdesk.app import create_app
from emulators.talkdesk.config import EmulatorConfig
from tests.emulators.test_talkdesk_emulator import (
    API_KEY,
    CREATE_BODY,
    FAST,
    Receiver,
    assert_talkdesk_error,
    get_token,
    record,
    send,
    wait_until,
)
from tools.harness.servers import free_port, serve_asgi

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0


class EmulatorProcess:
    """`python -m emulators.talkdesk` as a child process on a fixed loopback port, logging to a file."""

    def __init__(self, log_path: Path, *args: str, cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.log_path = log_path
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "emulators.talkdesk",
            "--port",
            str(self.port),
            "--agent-join-delay",
            str(FAST["agent_join_delay"]),
            "--agent-reply-delay",
            str(FAST["agent_reply_delay"]),
            *self.args,
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self.popen.poll()
            if code is not None:
                raise AssertionError(f"the emulator exited with {code} while starting:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the emulator did not answer /healthz within {START_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.popen is not None
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


@contextmanager
def running(process: EmulatorProcess) -> Iterator[EmulatorProcess]:
    process.start()
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def receiver_and_emulator(tmp_path: Path, receiver: Receiver) -> Iterator[EmulatorProcess]:
    """A callback receiver in this process and an emulator process on `tmp_path/td.sqlite3` calling it."""
    with serve_asgi(receiver.app) as receiver_url:
        process = EmulatorProcess(
            tmp_path / "emulator.log",
            "--state-file",
            str(tmp_path / "td.sqlite3"),
            "--callback-url",
            receiver_url,
            "--callback-api-key",
            API_KEY,
        )
        with running(process):
            yield process


def bearer(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["x-idempotency-key"] = key
    return headers


def create_with_key(client: httpx.Client, token: str, key: str) -> httpx.Response:
    return client.post("/digital-connect/conversations", json=CREATE_BODY, headers=bearer(token, key))


def test_a_sigkilled_emulator_restarted_on_its_state_file_carries_on(tmp_path: Path) -> None:
    receiver = Receiver()
    with receiver_and_emulator(tmp_path, receiver) as emulator:
        with emulator.client() as client:
            token = get_token(client)
            created = create_with_key(client, token, "create-1")
            assert created.status_code == 201, created.text
            conversation_id = created.json()["id"]
            first = send(client, bearer(token, "message-1"), conversation_id, "before the crash")
            assert first.status_code == 201, first.text
            wait_until(lambda: len(receiver.messages(conversation_id)) == 2)
            wait_until(
                lambda: (
                    [m["delivery"] for m in record(client, conversation_id)["agent_messages"]]
                    == ["delivered", "delivered"]
                )
            )
            before = record(client, conversation_id)

        emulator.kill()
        emulator.start()

        with emulator.client() as client:
            after = record(client, conversation_id)
            assert after == before  # every field: request, messages, deliveries, events, flags
            assert after["status"] == "open" and after["agent_joined"] is True
            assert [m["content"] for m in after["customer_messages"]] == ["before the crash"]

            # The old bearer token still works, and the scripted agent still answers through the callback.
            second = send(client, bearer(token, "message-2"), conversation_id, "after the restart")
            assert second.status_code == 201, second.text
            wait_until(lambda: len(receiver.messages(conversation_id)) == 3)
            echoes = ["You said: before the crash", "You said: after the restart"]
            assert receiver.messages(conversation_id)[1:] == echoes
            assert [c.action for c in receiver.accepted(conversation_id)].count("agent-joined") == 1

            # Idempotency keys of the previous process answer what they answered then, with no new effect.
            replayed = send(client, bearer(token, "message-1"), conversation_id, "before the crash")
            assert (replayed.status_code, replayed.json()) == (201, first.json())
            again = create_with_key(client, token, "create-1")
            assert (again.status_code, again.json()) == (201, created.json())
            full = record(client, conversation_id)
            assert [m["content"] for m in full["customer_messages"]] == ["before the crash", "after the restart"]
            seqs = [m["seq"] for m in full["customer_messages"] + full["agent_messages"]]
            assert sorted(seqs) == [1, 2, 3, 4, 5]  # the counter went on from where it was
            assert [c["id"] for c in client.get("/_emulator/conversations").json()] == [conversation_id]
            time.sleep(0.2)
            assert len(receiver.messages(conversation_id)) == 3  # nothing was sent twice

            # An ended conversation stays ended.
            assert (
                client.delete(f"/digital-connect/conversations/{conversation_id}", headers=bearer(token)).status_code
                == 204
            )
        emulator.kill()
        emulator.start()
        with emulator.client() as client:
            assert record(client, conversation_id)["ended_by"] == "customer"
            assert_talkdesk_error(send(client, bearer(token), conversation_id, "late"), 400, "3016011")


def test_agent_messages_queued_at_the_crash_are_delivered_after_the_restart(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=10_000, fail_status=503)  # lexdesk is down: every callback is retried
    with receiver_and_emulator(tmp_path, receiver) as emulator:
        with emulator.client() as client:
            token = get_token(client)
            conversation_id = create_with_key(client, token, "create-1").json()["id"]
            wait_until(lambda: len(receiver.calls) >= 2)  # the join is being retried
            # This call saves the conversation while the join is in flight: it is in effect, not yet heard.
            assert send(client, bearer(token), conversation_id, "hello").status_code == 201
            assert record(client, conversation_id)["agent_joined"] is True
            queued = record(client, conversation_id)["agent_messages"]
            assert [(m["content"], m["delivery"]) for m in queued] == [
                ("Hi, this is Alex. How can I help you today?", "queued"),
                ("You said: hello", "queued"),
            ]

        emulator.kill()
        receiver.fail_first = 0  # lexdesk is back
        emulator.start()

        wait_until(lambda: len(receiver.messages(conversation_id)) == 2)
        assert [c.action for c in receiver.accepted(conversation_id)] == ["agent-joined", "messages", "messages"]
        assert receiver.messages(conversation_id) == [m["content"] for m in queued]
        bodies = [c.body for c in receiver.accepted(conversation_id) if c.action == "messages"]
        assert [b["id"] for b in bodies] == [m["id"] for m in queued]  # the same messages, not new ones
        with emulator.client() as client:
            wait_until(
                lambda: (
                    [m["delivery"] for m in record(client, conversation_id)["agent_messages"]]
                    == ["delivered", "delivered"]
                )
            )
            assert record(client, conversation_id)["agent_joined"] is True


def restart_and_await_the_close(emulator: EmulatorProcess, receiver: Receiver, conversation_id: str
                                ) -> dict[str, Any]:
    """SIGKILL, lexdesk answering again, restart: the close callback goes out, after the join and the
    two messages; the conversation's record then."""
    emulator.kill()
    receiver.fail_first = 0
    emulator.start()
    wait_until(lambda: any(c.action == "close" for c in receiver.accepted(conversation_id)))
    assert [c.action for c in receiver.accepted(conversation_id)] == ["agent-joined", "messages", "messages", "close"]
    with emulator.client() as client:
        return record(client, conversation_id)


def test_a_pending_close_is_done_after_the_restart(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=10_000, fail_status=503)
    with receiver_and_emulator(tmp_path, receiver) as emulator:
        with emulator.client() as client:
            token = get_token(client)
            conversation_id = create_with_key(client, token, "create-1").json()["id"]
            assert send(client, bearer(token), conversation_id, "close").status_code == 201
            assert record(client, conversation_id)["closing"] is True
        full = restart_and_await_the_close(emulator, receiver, conversation_id)
        assert full["status"] == "ended" and full["ended_by"] == "agent" and full["closing"] is False


def test_a_close_whose_callback_was_in_flight_is_sent_after_the_restart(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=10_000, fail_status=503, fail_only="close")
    with receiver_and_emulator(tmp_path, receiver) as emulator:
        with emulator.client() as client:
            token = get_token(client)
            conversation_id = create_with_key(client, token, "create-1").json()["id"]
            assert send(client, bearer(token, "bye"), conversation_id, "close").status_code == 201
            wait_until(lambda: any(c.action == "close" for c in receiver.calls))
            assert record(client, conversation_id)["status"] == "ended"
            # lexdesk retries its last message: the replay saves the conversation with its close in flight.
            assert send(client, bearer(token, "bye"), conversation_id, "close").status_code == 201
        full = restart_and_await_the_close(emulator, receiver, conversation_id)
        assert full["status"] == "ended" and full["ended_by"] == "agent"
        assert [e["type"] for e in full["events"]].count("ended") == 1


def test_a_forgotten_conversation_stays_forgotten_after_a_restart(tmp_path: Path) -> None:
    receiver = Receiver()
    with receiver_and_emulator(tmp_path, receiver) as emulator:
        with emulator.client() as client:
            token = get_token(client)
            gone = create_with_key(client, token, "create-gone").json()["id"]
            kept = create_with_key(client, token, "create-kept").json()["id"]
            assert send(client, bearer(token, "m-1"), gone, "hi").status_code == 201
            forgotten = client.post(f"/_emulator/conversations/{gone}/forget")
            assert (forgotten.status_code, forgotten.json()) == (200, {"forgotten": gone})
            assert_forgotten(client, token, gone)

        emulator.kill()
        emulator.start()

        with emulator.client() as client:
            assert_forgotten(client, token, gone)
            assert [c["id"] for c in client.get("/_emulator/conversations").json()] == [kept]
            assert send(client, bearer(token), kept, "still here").status_code == 201
            # The create key of the forgotten conversation is gone with it: a retry makes a new one.
            recreated = create_with_key(client, token, "create-gone")
            assert recreated.status_code == 201 and recreated.json()["id"] not in (gone, kept)
            assert create_with_key(client, token, "create-kept").json() == {"id": kept}


def assert_forgotten(client: httpx.Client, token: str, conversation_id: str) -> None:
    """Every route answers for it what it answers for an id that never existed."""
    never = "00000000-0000-4000-8000-000000000000"
    for target in (conversation_id, never):
        body = assert_talkdesk_error(send(client, bearer(token, "m-1"), target, "hi"), 404)
        assert body == {
            "code": "3016005",
            "message": "Conversation not found",
            "description": f"No conversation with id {target}.",
            "fields": [],
        }
        deleted = client.delete(f"/digital-connect/conversations/{target}", headers=bearer(token))
        assert assert_talkdesk_error(deleted, 404) == body
        for path in ("", "/take", "/close", "/forget"):
            method = "GET" if not path else "POST"
            assert client.request(method, f"/_emulator/conversations/{target}{path}").status_code == 404
    assert conversation_id not in [c["id"] for c in client.get("/_emulator/conversations").json()]


def test_without_a_state_file_nothing_is_written(tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    log = tmp_path / "emulator.log"
    with running(EmulatorProcess(log, cwd=workdir)) as emulator, emulator.client() as client:
        token = get_token(client)
        conversation_id = create_with_key(client, token, "k").json()["id"]
        assert send(client, bearer(token, "m"), conversation_id, "hello").status_code == 201
        assert client.post(f"/_emulator/conversations/{conversation_id}/forget").status_code == 200
    assert list(workdir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "emulator.log"]


def test_a_second_emulator_on_the_same_state_file_refuses_to_start(tmp_path: Path) -> None:
    state = str(tmp_path / "td.sqlite3")
    with running(EmulatorProcess(tmp_path / "first.log", "--state-file", state)):
        second = EmulatorProcess(tmp_path / "second.log", "--state-file", state)
        started = time.monotonic()
        try:
            second.start()
        except AssertionError as exc:
            assert "cannot use the state file" in str(exc) and "database is locked" in str(exc), str(exc)
        else:
            second.stop()
            raise AssertionError("a second emulator started on a state file in use")
        assert time.monotonic() - started < 15
    assert oct(os.stat(state).st_mode & 0o777) == "0o600"


def test_state_file_round_trip_in_process_keeps_every_field(tmp_path: Path) -> None:
    """The app itself, stopped and built again: take-over, console messages, closing and ended flags,
    tokens and replay answers read back exactly as they were (the subprocess tests cover SIGKILL)."""
    receiver = Receiver()
    state = str(tmp_path / "td.sqlite3")
    with serve_asgi(receiver.app) as receiver_url:
        config = EmulatorConfig(**FAST, state_file=state, callback_url=receiver_url, callback_api_key=API_KEY)
        with serve_asgi(create_app(config)) as url, httpx.Client(base_url=url, timeout=10) as client:
            token = get_token(client)
            taken = create_with_key(client, token, "c-1").json()["id"]
            ended = create_with_key(client, token, "c-2").json()["id"]
            wait_until(lambda: len(receiver.messages(taken)) == 1 and len(receiver.messages(ended)) == 1)
            typed = client.post(f"/_emulator/conversations/{taken}/agent-messages", json={"content": "A human"})
            assert typed.status_code == 202
            assert send(client, bearer(token, "m-1"), taken, "are you a bot?").status_code == 201
            assert client.post(f"/_emulator/conversations/{ended}/close").status_code == 202
            wait_until(lambda: len(receiver.messages(taken)) == 2)
            wait_until(lambda: any(c.action == "close" for c in receiver.accepted(ended)))
            time.sleep(0.1)
            before = {cid: record(client, cid) for cid in (taken, ended)}
            listing = client.get("/_emulator/conversations").json()
        with serve_asgi(create_app(config)) as url, httpx.Client(base_url=url, timeout=10) as client:
            assert {cid: record(client, cid) for cid in (taken, ended)} == before
            assert client.get("/_emulator/conversations").json() == listing
            assert before[taken]["taken_over"] is True and before[ended]["status"] == "ended"
            replayed = send(client, bearer(token, "m-1"), taken, "are you a bot?")
            assert replayed.status_code == 201
            assert client.get("/_emulator/stats").json()["duplicates_absorbed"] == 1
