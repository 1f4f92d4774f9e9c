"""Agent typing and honest presence in the Talkdesk emulator.

With the scripted agent off nobody joins a conversation until a person takes it at /console, and then
under that person's name; what the person types reaches lexdesk's typing callback, best effort: it never
holds a message back. The first test runs the emulator as `python -m emulators.talkdesk`, as lexdesk's
developers do; the others build the app in this process.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from emulators.talkdesk.app import create_app
from emulators.talkdesk.config import EmulatorConfig
from tests.emulators.test_talkdesk_emulator import (
    API_KEY,
    FAST,
    Receiver,
    assert_talkdesk_error,
    auth,
    create,
    emulator,
    emulator_with_receiver,
    record,
    send,
    wait_until,
)
from tests.emulators.test_talkdesk_persistence import EmulatorProcess, running
from tools.harness.servers import serve_asgi


def typing(client: httpx.Client, conversation_id: str, active: bool) -> httpx.Response:
    return client.post(f"/_emulator/conversations/{conversation_id}/typing", json={"active": active})


def take(client: httpx.Client, conversation_id: str, agent_name: str | None = None) -> httpx.Response:
    body = {"agent_name": agent_name} if agent_name else None
    return client.post(f"/_emulator/conversations/{conversation_id}/take", json=body)


def test_the_process_without_scripted_agent_joins_on_take_over_and_forwards_typing(tmp_path: Path) -> None:
    receiver = Receiver()
    with serve_asgi(receiver.app) as receiver_url:
        process = EmulatorProcess(
            tmp_path / "emulator.log",
            "--callback-url",
            receiver_url,
            "--callback-api-key",
            API_KEY,
            "--no-scripted-agent",
        )
        with running(process), process.client() as client:
            headers = auth(client)
            conversation_id = create(client, headers)
            assert send(client, headers, conversation_id, "is anyone there?").status_code == 201
            time.sleep(0.5)  # ten times the join delay: a scripted agent would have joined and answered
            assert receiver.calls == []
            waiting = record(client, conversation_id)
            assert waiting["agent_joined"] is False and waiting["agent_name"] is None
            assert "agent_joined" not in [e["type"] for e in waiting["events"]]
            assert_talkdesk_error(typing(client, conversation_id, True), 409, "3016013")  # nobody to type

            taken = take(client, conversation_id, "Sam Rivera")
            assert taken.status_code == 200 and taken.json()["taken_over"] is True
            wait_until(lambda: receiver.actions(conversation_id) == ["agent-joined"])
            joined = receiver.accepted(conversation_id)[0]
            assert joined.body == {"agent_name": "Sam Rivera"} and joined.api_key == API_KEY

            started = typing(client, conversation_id, True)
            assert (started.status_code, started.json()) == (202, {"id": conversation_id, "active": True})
            wait_until(lambda: receiver.typing(conversation_id) == [True])
            assert typing(client, conversation_id, False).status_code == 202
            wait_until(lambda: receiver.typing(conversation_id) == [True, False])
            typed = [c for c in receiver.accepted(conversation_id) if c.action == "typing"]
            assert all(c.api_key == API_KEY for c in typed)
            assert [c.body for c in typed] == [{"active": True}, {"active": False}]

            reply = client.post(
                f"/_emulator/conversations/{conversation_id}/agent-messages", json={"content": "Hi, I'm Sam."}
            )
            assert reply.status_code == 202
            wait_until(lambda: receiver.messages(conversation_id) == ["Hi, I'm Sam."])
            message = next(c for c in receiver.accepted(conversation_id) if c.action == "messages")
            assert message.body["author_name"] == "Sam Rivera"

            unknown = typing(client, str(uuid.uuid4()), True)
            assert_talkdesk_error(unknown, 404, "3016005")

            assert client.post(f"/_emulator/conversations/{conversation_id}/close").status_code == 202
            wait_until(lambda: receiver.actions(conversation_id)[-1:] == ["close"])
            assert_talkdesk_error(typing(client, conversation_id, True), 409, "3016011")

            events = [e for e in record(client, conversation_id)["events"] if e["type"] == "agent_typing"]
            assert [(e["active"], e["by"]) for e in events] == [(True, "console"), (False, "console")]
            assert receiver.actions(conversation_id) == ["agent-joined", "typing", "typing", "messages", "close"]


def test_with_the_scripted_agent_presence_stays_as_it_was() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver) as client:
        conversation_id = create(client, auth(client))
        wait_until(lambda: len(receiver.messages(conversation_id)) == 1)
        assert receiver.accepted(conversation_id)[0].body == {"agent_name": "Alex"}
        assert record(client, conversation_id)["agent_name"] == "Alex"
        # A person taking it over answers as the agent who joined: no second join under another name.
        assert take(client, conversation_id, "Sam Rivera").status_code == 200
        assert typing(client, conversation_id, True).status_code == 202
        wait_until(lambda: receiver.typing(conversation_id) == [True])
        client.post(f"/_emulator/conversations/{conversation_id}/agent-messages", json={"content": "A human"})
        wait_until(lambda: len(receiver.messages(conversation_id)) == 2)
        assert receiver.actions(conversation_id) == ["agent-joined", "messages", "typing", "messages"]
        assert [c.body["author_name"] for c in receiver.accepted(conversation_id) if c.action == "messages"] == [
            "Alex",
            "Alex",
        ]


def test_a_message_sent_without_taking_over_first_joins_before_it() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver, scripted_agent=False) as client:
        conversation_id = create(client, auth(client))
        typed = client.post(
            f"/_emulator/conversations/{conversation_id}/agent-messages",
            json={"content": "Hello", "agent_name": "  Kim  "},
        )
        assert typed.status_code == 202 and typed.json()["author_name"] == "Kim"
        wait_until(lambda: receiver.messages(conversation_id) == ["Hello"])
        assert receiver.actions(conversation_id) == ["agent-joined", "messages"]
        assert receiver.accepted(conversation_id)[0].body == {"agent_name": "Kim"}
        assert take(client, conversation_id, "Someone Else").status_code == 200  # joined already: no change
        time.sleep(0.2)
        assert receiver.actions(conversation_id) == ["agent-joined", "messages"]


def test_take_over_without_a_name_joins_as_agent_and_bad_bodies_are_422() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver, scripted_agent=False) as client:
        conversation_id = create(client, auth(client))
        assert take(client, conversation_id, "   ").status_code == 422
        assert client.post(f"/_emulator/conversations/{conversation_id}/typing", json={}).status_code == 422
        assert (
            client.post(f"/_emulator/conversations/{conversation_id}/typing", json={"active": "x"}).status_code == 422
        )
        assert take(client, conversation_id).status_code == 200
        wait_until(lambda: receiver.actions(conversation_id) == ["agent-joined"])
        assert receiver.accepted(conversation_id)[0].body == {"agent_name": "Agent"}


def test_typing_never_holds_a_message_back() -> None:
    # lexdesk takes 1.5 s to answer each typing callback: the message sent meanwhile goes out at once.
    receiver = Receiver(stall={"typing": 1.5})
    with emulator_with_receiver(receiver, scripted_agent=False) as client:
        conversation_id = create(client, auth(client))
        take(client, conversation_id, "Sam")
        wait_until(lambda: receiver.actions(conversation_id) == ["agent-joined"])
        assert typing(client, conversation_id, True).status_code == 202
        time.sleep(0.2)  # the typing callback is at lexdesk, not yet answered
        sent = time.monotonic()
        client.post(f"/_emulator/conversations/{conversation_id}/agent-messages", json={"content": "Right away"})
        wait_until(lambda: receiver.messages(conversation_id) == ["Right away"], timeout=3)
        message = next(c for c in receiver.calls if c.action == "messages")
        assert message.received_at - sent < 0.8
        # The message ended the typing: the callback still out was cancelled, and no "false" follows it.
        time.sleep(1.6)
        assert [c.action for c in receiver.calls if c.received_at > message.received_at] == []
        assert len([c for c in receiver.calls if c.action == "typing"]) <= 1
        events = [e for e in record(client, conversation_id)["events"] if e["type"] == "callback_delivered"]
        assert [e["path"].rsplit("/", 1)[1] for e in events] == ["agent-joined", "messages"]


def test_typing_is_best_effort_two_short_attempts_then_given_up() -> None:
    receiver = Receiver(fail_first=100, fail_status=503, fail_only="typing")
    with emulator_with_receiver(receiver, scripted_agent=False) as client:
        conversation_id = create(client, auth(client))
        take(client, conversation_id, "Sam")
        wait_until(lambda: receiver.actions(conversation_id) == ["agent-joined"])
        started = time.monotonic()
        assert typing(client, conversation_id, True).status_code == 202
        wait_until(lambda: "callback_failed" in [e["type"] for e in record(client, conversation_id)["events"]])
        assert time.monotonic() - started < 2
        assert [(c.action, c.status) for c in receiver.calls if c.action == "typing"] == [("typing", 503)] * 2
        failed = [e for e in record(client, conversation_id)["events"] if e["type"] == "callback_failed"]
        assert failed[0]["path"].endswith("/typing") and failed[0]["attempts"] == 2


def test_typing_right_after_take_over_waits_for_the_join() -> None:
    receiver = Receiver(fail_first=3, fail_status=503, fail_only="agent-joined")
    with emulator_with_receiver(receiver, scripted_agent=False) as client:
        conversation_id = create(client, auth(client))
        take(client, conversation_id, "Sam")
        assert typing(client, conversation_id, True).status_code == 202
        wait_until(lambda: receiver.typing(conversation_id) == [True])
        assert receiver.actions(conversation_id) == ["agent-joined", "typing"]


def test_without_a_callback_url_take_over_joins_at_once_and_typing_is_only_recorded() -> None:
    with emulator(callback_url=None, scripted_agent=False) as client:
        conversation_id = create(client, auth(client))
        assert record(client, conversation_id)["agent_joined"] is False
        take(client, conversation_id, "Sam")
        taken = record(client, conversation_id)
        assert taken["agent_joined"] is True and taken["agent_name"] == "Sam"
        assert typing(client, conversation_id, True).status_code == 202
        events = [e["type"] for e in record(client, conversation_id)["events"]]
        assert events[-1] == "agent_typing" and "callback_delivered" not in events


def test_a_join_taken_before_a_restart_goes_out_after_it_under_the_same_name(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=10_000, fail_status=503, fail_only="agent-joined")
    state = str(tmp_path / "td.sqlite3")
    with serve_asgi(receiver.app) as receiver_url:
        config = EmulatorConfig(
            **FAST, state_file=state, callback_url=receiver_url, callback_api_key=API_KEY, scripted_agent=False
        )
        with serve_asgi(create_app(config)) as url, httpx.Client(base_url=url, timeout=10) as client:
            conversation_id = create(client, auth(client))
            take(client, conversation_id, "Sam Rivera")
            wait_until(lambda: len(receiver.calls) >= 1)  # the join is being retried
        receiver.fail_first = 0
        with serve_asgi(create_app(config)):
            wait_until(lambda: receiver.actions(conversation_id) == ["agent-joined"])
            assert receiver.accepted(conversation_id)[0].body == {"agent_name": "Sam Rivera"}
