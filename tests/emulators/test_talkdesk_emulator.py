"""The Talkdesk emulator over real HTTP on loopback: API, faults, idempotency, agent callbacks, console."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from emulators.talkdesk.app import create_app
from emulators.talkdesk.config import EmulatorConfig
from tools.harness.servers import serve_asgi

CLIENT_ID = "lexdesk-emulator-client"
CLIENT_SECRET = "lexdesk-emulator-secret"
API_KEY = "callback-secret-key"
CREATE_BODY: dict[str, Any] = {
    "touchpoint_id": "emulator-touchpoint",
    "subject": "Reset my account",
    "contact_person": {"email": "visitor@example.com"},
    "context_parameters": {
        "contact_name": "Dana Visitor",
        "contact_phone": "+18445852205",
        "contact_reason": "account",
        "website_location": "https://shop.example.com/help",
    },
    "previous_messages": [
        {"type": "EXTERNAL", "content": "How can I help you?", "created_at": "2024-01-01T08:00:00+00:00"},
        {"type": "USER", "content": "I want to reset my account.", "created_at": "2024-01-01T08:00:05Z"},
    ],
}
FAST = {"agent_join_delay": 0.05, "agent_reply_delay": 0.02}


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@dataclass
class Call:
    conversation_id: str
    action: str
    body: dict[str, Any]
    api_key: str | None
    status: int
    received_at: float = 0.0
    """time.monotonic() when the request came in (before any stall)."""


class Receiver:
    """A stand-in for lexdesk's callback receiver: records every call; can fail the first N calls (of one
    action only, with `fail_only`), and take `stall[action]` seconds to answer the calls of an action."""

    def __init__(
        self,
        fail_first: int = 0,
        fail_status: int = 503,
        fail_only: str | None = None,
        stall: dict[str, float] | None = None,
    ) -> None:
        self.calls: list[Call] = []
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.fail_only = fail_only
        self.stall = dict(stall or {})
        self._lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/talkdesk/conversations/{conversation_id}/{action}")
        async def callback(conversation_id: str, action: str, request: Request) -> JSONResponse:
            # Read the body before taking the (thread) lock: awaiting while holding it would let a second
            # callback, on the same event loop, block that loop on the lock forever.
            received_at = time.monotonic()
            body = await request.json()
            if self.stall.get(action):
                await asyncio.sleep(self.stall[action])
            with self._lock:
                failing = self.fail_first > 0 and self.fail_only in (None, action)
                if failing:
                    self.fail_first -= 1
                status = self.fail_status if failing else 202
                api_key = request.headers.get("x-api-key")
                self.calls.append(Call(conversation_id, action, body, api_key, status, received_at))
            return JSONResponse({"accepted": not failing}, status_code=status)

    def accepted(self, conversation_id: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.status == 202 and (conversation_id is None or c.conversation_id == conversation_id)
            ]

    def messages(self, conversation_id: str) -> list[str]:
        return [c.body["content"] for c in self.accepted(conversation_id) if c.action == "messages"]

    def actions(self, conversation_id: str) -> list[str]:
        """What lexdesk accepted for the conversation, in order: "agent-joined", "typing", "messages"..."""
        return [c.action for c in self.accepted(conversation_id)]

    def typing(self, conversation_id: str) -> list[bool]:
        return [bool(c.body["active"]) for c in self.accepted(conversation_id) if c.action == "typing"]


@contextmanager
def emulator(**overrides: Any) -> Iterator[httpx.Client]:
    config = EmulatorConfig(**{**FAST, **overrides})
    with serve_asgi(create_app(config)) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        yield client


@contextmanager
def emulator_with_receiver(receiver: Receiver, **overrides: Any) -> Iterator[httpx.Client]:
    with (
        serve_asgi(receiver.app) as receiver_url,
        emulator(callback_url=receiver_url, callback_api_key=API_KEY, **overrides) as client,
    ):
        yield client


def get_token(client: httpx.Client) -> str:
    response = client.post(
        "/oauth/token",
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={"grant_type": "client_credentials", "scope": "digital-connect:write"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def auth(client: httpx.Client, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {get_token(client)}"}
    if key:
        headers["x-idempotency-key"] = key
    return headers


def create(client: httpx.Client, headers: dict[str, str], body: dict[str, Any] | None = None) -> str:
    response = client.post("/digital-connect/conversations", json=body or CREATE_BODY, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def send(client: httpx.Client, headers: dict[str, str], conversation_id: str, content: str) -> httpx.Response:
    return client.post(
        f"/digital-connect/conversations/{conversation_id}/messages",
        json={"content": content, "attachments": []},
        headers=headers,
    )


def record(client: httpx.Client, conversation_id: str) -> dict[str, Any]:
    response = client.get(f"/_emulator/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def stats(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/_emulator/stats").json())


def assert_talkdesk_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "description", "fields"}
    assert isinstance(body["code"], str) and body["message"]
    assert isinstance(body["fields"], list)
    if code is not None:
        assert body["code"] == code
    return dict(body)


# OAuth and bearer tokens


def test_token_flow_and_oauth_errors() -> None:
    with emulator() as client:
        ok = client.post(
            "/oauth/token",
            auth=(CLIENT_ID, CLIENT_SECRET),
            data={"grant_type": "client_credentials", "scope": "digital-connect:write"},
        )
        assert ok.status_code == 200
        token = ok.json()
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
        assert token["scope"] == "digital-connect:write" and len(token["access_token"]) > 20

        wrong = client.post("/oauth/token", auth=(CLIENT_ID, "nope"), data={"grant_type": "client_credentials"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        anonymous = client.post("/oauth/token", data={"grant_type": "client_credentials"})
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
        grant = client.post("/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "password"})
        assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
        assert stats(client)["tokens_issued"] == 1


def test_api_requires_a_valid_unexpired_bearer_token() -> None:
    with emulator(token_ttl=0.3) as client:
        missing = client.post("/digital-connect/conversations", json=CREATE_BODY)
        assert_talkdesk_error(missing, 401)
        unknown = client.post(
            "/digital-connect/conversations", json=CREATE_BODY, headers={"Authorization": "Bearer made-up"}
        )
        assert_talkdesk_error(unknown, 401)
        headers = auth(client)
        create(client, headers)
        time.sleep(0.4)
        expired = client.post("/digital-connect/conversations", json=CREATE_BODY, headers=headers)
        assert_talkdesk_error(expired, 401)
        assert stats(client)["conversations"] == 1


# Conversations and messages


def test_create_message_and_delete_happy_path() -> None:
    with emulator() as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        uuid.UUID(conversation_id)

        sent = send(client, headers, conversation_id, "Hello there")
        assert sent.status_code == 201
        answer = sent.json()
        assert answer["id"] == conversation_id and answer["message_id"]
        assert len(answer["created_at"]) == 24 and answer["created_at"].endswith("Z")
        assert send(client, headers, conversation_id, "Second").status_code == 201

        full = record(client, conversation_id)
        assert full["status"] == "open"
        assert full["request"] == CREATE_BODY
        assert full["previous_messages"] == CREATE_BODY["previous_messages"]
        assert full["context_parameters"]["contact_name"] == "Dana Visitor"
        assert [m["content"] for m in full["customer_messages"]] == ["Hello there", "Second"]

        listing = client.get("/_emulator/conversations").json()
        assert [c["id"] for c in listing] == [conversation_id]
        assert listing[0]["customer_messages"] == 2
        assert listing[0]["contact"] == {"email": "visitor@example.com", "name": "Dana Visitor"}

        deleted = client.delete(f"/digital-connect/conversations/{conversation_id}", headers=headers)
        assert deleted.status_code == 204
        full = record(client, conversation_id)
        assert full["status"] == "ended" and full["ended_by"] == "customer"
        assert stats(client)["messages_received"] == 2


def test_ended_conversation_answers_3016011() -> None:
    with emulator() as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert client.delete(f"/digital-connect/conversations/{conversation_id}", headers=headers).status_code == 204
        assert_talkdesk_error(send(client, headers, conversation_id, "still there?"), 400, "3016011")
        again = client.delete(f"/digital-connect/conversations/{conversation_id}", headers=headers)
        assert_talkdesk_error(again, 400, "3016011")
        assert record(client, conversation_id)["customer_messages"] == []


def test_unknown_conversation_and_touchpoint_are_404() -> None:
    with emulator() as client:
        headers = auth(client)
        missing = str(uuid.uuid4())
        assert_talkdesk_error(send(client, headers, missing, "hi"), 404)
        assert_talkdesk_error(client.delete(f"/digital-connect/conversations/{missing}", headers=headers), 404)
        other = {**CREATE_BODY, "touchpoint_id": "someone-elses-touchpoint"}
        response = client.post("/digital-connect/conversations", json=other, headers=headers)
        assert_talkdesk_error(response, 404)
        assert client.get(f"/_emulator/conversations/{missing}").status_code == 404
        assert stats(client)["conversations"] == 0


def test_bad_bodies_are_422_with_fields() -> None:
    with emulator() as client:
        headers = auth(client)
        bad_create = {
            "subject": 42,
            "contact_person": {"email": "not-an-email"},
            "previous_messages": [{"type": "BOT", "content": "x", "created_at": "yesterday"}],
        }
        response = client.post("/digital-connect/conversations", json=bad_create, headers=headers)
        names = {f["name"] for f in assert_talkdesk_error(response, 422)["fields"]}
        assert {"touchpoint_id", "subject", "contact_person.email"} <= names
        assert {"previous_messages.0.type", "previous_messages.0.created_at"} <= names

        not_json = client.post(
            "/digital-connect/conversations",
            content=b"{oops",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert assert_talkdesk_error(not_json, 422)["fields"][0]["name"] == "body"

        conversation_id = create(client, headers)
        url = f"/digital-connect/conversations/{conversation_id}/messages"
        no_content = client.post(url, json={"attachments": []}, headers=headers)
        assert [f["name"] for f in assert_talkdesk_error(no_content, 422)["fields"]] == ["content"]
        wrong_type = client.post(url, json={"content": "hi", "attachments": "none"}, headers=headers)
        assert [f["name"] for f in assert_talkdesk_error(wrong_type, 422)["fields"]] == ["attachments"]
        assert stats(client)["conversations"] == 1
        assert record(client, conversation_id)["customer_messages"] == []


def test_idempotency_keys_apply_once() -> None:
    with emulator() as client:
        headers = auth(client, key="create-key-1")
        first = client.post("/digital-connect/conversations", json=CREATE_BODY, headers=headers)
        second = client.post("/digital-connect/conversations", json=CREATE_BODY, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        conversation_id = first.json()["id"]
        assert stats(client)["conversations"] == 1

        plain = auth(client)
        message_headers = {**plain, "x-idempotency-key": "message-key-1"}
        one = send(client, message_headers, conversation_id, "only once")
        two = send(client, message_headers, conversation_id, "only once")
        assert one.status_code == two.status_code == 201
        assert one.json() == two.json()
        assert send(client, {**plain, "x-idempotency-key": "message-key-2"}, conversation_id, "b").status_code == 201
        assert send(client, plain, conversation_id, "no key").status_code == 201
        assert send(client, plain, conversation_id, "no key").status_code == 201

        messages = record(client, conversation_id)["customer_messages"]
        assert [(m["content"], m["idempotency_key"]) for m in messages] == [
            ("only once", "message-key-1"),
            ("b", "message-key-2"),
            ("no key", None),
            ("no key", None),
        ]
        counts = stats(client)
        assert counts["duplicates_absorbed"] == 2 and counts["messages_received"] == 4


# Faults


def test_error_rate_answers_5xx_with_no_effect_and_can_be_turned_off() -> None:
    with emulator(error_rate=1.0, seed=1) as client:
        for _ in range(6):
            response = client.post(
                "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "client_credentials"}
            )
            assert_talkdesk_error(response, response.status_code)
            assert response.status_code in (500, 503)
        knobs = client.put("/_emulator/faults", json={"error_rate": 0}).json()
        assert knobs["error_rate"] == 0
        headers = auth(client, key="k1")
        client.put("/_emulator/faults", json={"error_rate": 1})
        statuses = {
            client.post("/digital-connect/conversations", json=CREATE_BODY, headers=headers).status_code
            for _ in range(10)
        }
        assert statuses <= {500, 503}
        counts = stats(client)
        assert counts["conversations"] == 0 and counts["tokens_issued"] == 1
        assert counts["faults"]["error_500"] + counts["faults"]["error_503"] == 16
        client.put("/_emulator/faults", json={"error_rate": 0})
        conversation_id = create(client, headers)
        client.put("/_emulator/faults", json={"error_rate": 1})
        assert send(client, headers, conversation_id, "lost").status_code in (500, 503)
        assert client.delete(f"/digital-connect/conversations/{conversation_id}", headers=headers).status_code in (
            500,
            503,
        )
        full = record(client, conversation_id)
        assert full["customer_messages"] == [] and full["status"] == "open"


def test_rate_limit_answers_429_with_retry_after() -> None:
    with emulator() as client:
        headers = auth(client)
        client.put("/_emulator/faults", json={"rate_limit_rate": 1, "retry_after": 3})
        response = client.post("/digital-connect/conversations", json=CREATE_BODY, headers=headers)
        assert_talkdesk_error(response, 429)
        assert response.headers["Retry-After"] == "3"
        assert client.post("/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET)).status_code == 429
        counts = stats(client)
        assert counts["conversations"] == 0 and counts["faults"]["rate_limit"] == 2


def test_stall_and_latency() -> None:
    with emulator(stall_rate=1.0, stall_seconds=0.4) as client:
        token_started = time.monotonic()
        stalled_token = client.post("/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET))
        assert time.monotonic() - token_started >= 0.35
        assert_talkdesk_error(stalled_token, 504)
        client.put("/_emulator/faults", json={"stall_rate": 0})
        headers = auth(client)
        client.put("/_emulator/faults", json={"stall_rate": 1})
        with pytest.raises(httpx.ReadTimeout):
            client.post("/digital-connect/conversations", json=CREATE_BODY, headers=headers, timeout=0.1)
        time.sleep(0.5)
        assert stats(client)["conversations"] == 0
        assert stats(client)["faults"]["stall"] == 2

        client.put("/_emulator/faults", json={"stall_rate": 0, "latency": 0.25})
        started = time.monotonic()
        create(client, headers)
        assert time.monotonic() - started >= 0.25
        assert client.get("/_emulator/faults").json()["latency"] == 0.25


def test_faults_are_reproducible_with_a_seed_and_validated() -> None:
    def statuses(seed: int) -> list[int]:
        with emulator(error_rate=0.5, seed=seed) as client:
            return [
                client.post(
                    "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "client_credentials"}
                ).status_code
                for _ in range(12)
            ]

    first = statuses(7)
    assert first == statuses(7)
    assert 200 in first and ({500, 503} & set(first))
    with emulator() as client:
        assert client.put("/_emulator/faults", json={"error_rate": 2}).status_code == 422
        assert client.put("/_emulator/faults", json={"bogus": 1}).status_code == 422
        assert client.get("/_emulator/faults").json()["error_rate"] == 0


# The emulated agent


def test_agent_joins_greets_and_echoes_in_order() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        words = [f"message {i}" for i in range(5)]
        for word in words:
            assert send(client, headers, conversation_id, word).status_code == 201
        wait_until(lambda: len(receiver.messages(conversation_id)) == 6)

        calls = receiver.accepted(conversation_id)
        assert calls[0].action == "agent-joined" and calls[0].body == {"agent_name": "Alex"}
        assert [c.action for c in calls[1:]] == ["messages"] * 6
        assert receiver.messages(conversation_id)[0].startswith("Hi, this is Alex")
        assert receiver.messages(conversation_id)[1:] == [f"You said: {w}" for w in words]
        assert all(c.api_key == API_KEY for c in calls)
        bodies = [c.body for c in calls[1:]]
        assert all(set(b) == {"id", "content", "author_name", "created_at"} for b in bodies)
        assert all(b["author_name"] == "Alex" and b["created_at"].endswith("Z") for b in bodies)
        assert len({b["id"] for b in bodies}) == 6

        full = record(client, conversation_id)
        assert full["agent_joined"] is True
        assert [m["delivery"] for m in full["agent_messages"]] == ["delivered"] * 6
        assert stats(client)["callbacks_delivered"] == 7


def test_close_command_says_goodbye_and_closes() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert send(client, headers, conversation_id, "  /CLOSE ").status_code == 201
        wait_until(lambda: any(c.action == "close" for c in receiver.accepted(conversation_id)))
        calls = receiver.accepted(conversation_id)
        assert [c.action for c in calls] == ["agent-joined", "messages", "messages", "close"]
        assert calls[2].body["content"] == "Thanks for chatting with us. Goodbye!"
        assert calls[3].body == {"reason": "agent_closed"}
        full = record(client, conversation_id)
        assert full["status"] == "ended" and full["ended_by"] == "agent"
        assert_talkdesk_error(send(client, headers, conversation_id, "wait"), 400, "3016011")


def test_callbacks_are_retried_after_503_and_keep_their_order() -> None:
    receiver = Receiver(fail_first=2, fail_status=503)
    with emulator_with_receiver(receiver) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert send(client, headers, conversation_id, "hello").status_code == 201
        wait_until(lambda: len(receiver.messages(conversation_id)) == 2)
        assert [c.status for c in receiver.calls[:3]] == [503, 503, 202]
        assert all(c.action == "agent-joined" for c in receiver.calls[:3])
        assert [c.action for c in receiver.accepted(conversation_id)] == ["agent-joined", "messages", "messages"]
        assert receiver.messages(conversation_id)[1] == "You said: hello"
        counts = stats(client)
        assert counts["callback_retries"] == 2 and counts["callback_failures"] == 0


def test_other_4xx_callbacks_are_not_retried_but_recorded() -> None:
    receiver = Receiver(fail_first=1, fail_status=404)
    with emulator_with_receiver(receiver) as client:
        conversation_id = create(client, auth(client))
        wait_until(lambda: len(receiver.messages(conversation_id)) == 1)
        assert [(c.action, c.status) for c in receiver.calls] == [("agent-joined", 404), ("messages", 202)]
        counts = stats(client)
        assert counts["callback_failures"] == 1 and counts["callback_retries"] == 0
        events = [e["type"] for e in record(client, conversation_id)["events"]]
        assert "callback_failed" in events


def test_deleted_conversation_gets_no_more_callbacks() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver, agent_join_delay=0.3) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert client.delete(f"/digital-connect/conversations/{conversation_id}", headers=headers).status_code == 204
        time.sleep(0.6)
        assert receiver.calls == []
        agent_messages = record(client, conversation_id)["agent_messages"]
        assert [m["delivery"] for m in agent_messages] == ["dropped"]


def test_console_messages_take_over_and_console_close() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        wait_until(lambda: len(receiver.messages(conversation_id)) == 1)
        typed = client.post(
            f"/_emulator/conversations/{conversation_id}/agent-messages", json={"content": "A human here"}
        )
        assert typed.status_code == 202 and typed.json()["source"] == "console"
        assert send(client, headers, conversation_id, "are you a bot?").status_code == 201
        wait_until(lambda: len(receiver.messages(conversation_id)) == 2)
        closed = client.post(f"/_emulator/conversations/{conversation_id}/close")
        assert closed.status_code == 202
        wait_until(lambda: any(c.action == "close" for c in receiver.accepted(conversation_id)))
        time.sleep(0.1)
        assert receiver.messages(conversation_id)[1:] == ["A human here"]
        full = record(client, conversation_id)
        assert full["taken_over"] is True and full["status"] == "ended" and full["ended_by"] == "agent"
        late = client.post(f"/_emulator/conversations/{conversation_id}/agent-messages", json={"content": "x"})
        assert late.status_code == 400


def test_take_stops_the_scripted_agent() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver, scripted_agent=True) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert client.post(f"/_emulator/conversations/{conversation_id}/take").json()["taken_over"] is True
        send(client, headers, conversation_id, "anyone?")
        wait_until(lambda: len(receiver.accepted(conversation_id)) == 1)
        time.sleep(0.2)
        assert [c.action for c in receiver.accepted(conversation_id)] == ["agent-joined"]


def test_without_callback_url_the_agent_is_silent() -> None:
    with emulator(callback_url=None) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert send(client, headers, conversation_id, "hello").status_code == 201
        typed = client.post(f"/_emulator/conversations/{conversation_id}/agent-messages", json={"content": "hi"})
        assert typed.json()["delivery"] == "not_sent"
        assert client.post(f"/_emulator/conversations/{conversation_id}/close").status_code == 202
        assert record(client, conversation_id)["status"] == "ended"


def test_shutdown_with_pending_callbacks_is_prompt() -> None:
    receiver = Receiver()
    started = 0.0
    with emulator_with_receiver(receiver, agent_join_delay=30) as client:
        create(client, auth(client))
        started = time.monotonic()
    assert time.monotonic() - started < 3
    assert receiver.calls == []


# Console and health


def test_console_page_and_healthz() -> None:
    with emulator() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        page = client.get("/console")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        for needle in (
            'id="conversation-list"',
            'id="agent-input"',
            'id="send-button"',
            "End conversation",
            "/agent-messages",
            "/close",
            "/take",
            "previous_messages",
            "setInterval(refresh, 1000)",
        ):
            assert needle in html, needle
        assert "<script src=" not in html and "<link " not in html
