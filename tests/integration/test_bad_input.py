"""Bad input at both edges of the system (docs/protocol.md §2 and §3), on real processes: each bad frame or
call gets the documented answer, the socket stays open where the protocol says so, and nothing valid is
lost or added on the way."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.edge import tokens
from tests.integration.journeys import assert_gapless, eventually, reach_agent
from tools.harness.customer import Customer, Frame
from tools.harness.system import System


async def expect_error(customer: Customer, payload: str | bytes | Frame, code: str, *says: str,
                       frame_id: str | None = None) -> Frame:
    """Send one bad frame and return the error it gets: `code`, a message containing each of `says`,
    `id` echoed (or absent), and the socket still open."""
    assert customer.ws is not None
    seen = {id(f) for f in customer.others}
    await customer.ws.send(json.dumps(payload) if isinstance(payload, dict) else payload)
    error = await customer.wait_other(lambda f: id(f) not in seen and f["type"] == "error", timeout=10)
    assert error["code"] == code, error
    for text in says:
        assert text in error["message"], (text, error)
    assert error.get("id") == frame_id, error
    assert not customer.closed.is_set()
    return error


async def ping(customer: Customer) -> None:
    """The socket is open and answering."""
    seen = {id(f) for f in customer.others}
    await customer.send({"type": "ping"})
    pong = await customer.wait_other(lambda f: id(f) not in seen and f["type"] == "pong", timeout=10)
    assert pong == {"type": "pong"}


async def accepted(customer: Customer, frame: Frame) -> None:
    """Send a valid message; it is `accepted`."""
    seen = {id(f) for f in customer.others}
    await customer.send(frame)
    answer = await customer.wait_other(
        lambda f: id(f) not in seen and f.get("id") == frame["id"] and f["type"] in ("accepted", "error"))
    assert answer == {"type": "accepted", "id": frame["id"]}


def conversation(system: System, conversation_id: str) -> dict[str, Any]:
    with system.admin() as admin:
        response = admin.get(f"/api/conversations/{conversation_id}")
    response.raise_for_status()
    return dict(response.json())


def customer_texts(system: System, conversation_id: str) -> list[str]:
    """What the transcript holds as the customer's messages."""
    return [m["text"] for m in conversation(system, conversation_id)["transcript"]
            if m["sender"] == "customer" and m["kind"] == "message"]


def field_names(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["error"] == "invalid_body" and body["message"], body
    return [f["name"] for f in body["fields"]]


# -- the customer WebSocket (docs/protocol.md §2) -------------------------------------------------------


def test_bad_frames_get_bad_frame_or_unknown_type_and_lose_nothing(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        welcome = await customer.hello(system.edge_urls[0], shoe_size=44, customer={"name": "Bo", "x": 1})
        assert welcome["state"] == "bot"
        conversation_id = welcome["conversation_id"]

        await expect_error(customer, '{"type": "message", "id": "m1", "text": "hi"', "bad_frame", "not valid JSON")
        await expect_error(customer, "not json at all", "bad_frame", "not valid JSON")
        await expect_error(customer, "", "bad_frame", "not valid JSON")
        for not_an_object in ('[{"type": "ping"}]', '"ping"', "null", "42"):
            await expect_error(customer, not_an_object, "bad_frame", "JSON object", "'type'")
        await expect_error(customer, {"id": "m2", "text": "no type"}, "bad_frame", "'type'")
        await expect_error(customer, {"type": 5, "id": "m3", "text": "type is a number"}, "bad_frame", "'type'")
        await expect_error(customer, {"type": None}, "bad_frame", "'type'")
        await expect_error(customer, b'{"type": "ping"}', "bad_frame", "binary")
        await expect_error(customer, {"type": "shout", "id": "m4", "text": "x"}, "unknown_type", "'shout'",
                           frame_id="m4")
        await expect_error(customer, {"type": "shout", "id": 7}, "unknown_type", "'shout'")  # id not a string
        await expect_error(customer, {"type": "MESSAGE", "id": "m5", "text": "x"}, "unknown_type", "'MESSAGE'",
                           frame_id="m5")
        await expect_error(customer, {"type": "message", "text": "no id"}, "bad_frame", "id")
        await expect_error(customer, {"type": "message", "id": "", "text": "empty id"}, "bad_frame", "id",
                           frame_id="")
        await expect_error(customer, {"type": "message", "id": "m6", "text": ""}, "bad_frame", "text",
                           frame_id="m6")
        await expect_error(customer, {"type": "message", "id": "m7"}, "bad_frame", "text", frame_id="m7")
        await expect_error(customer, {"type": "message", "id": "m8", "text": 12}, "bad_frame", "text",
                           frame_id="m8")
        await expect_error(customer, {"type": "ack", "seq": "many"}, "bad_frame", "seq")
        await ping(customer)

        # The same socket still works, and unknown fields in a valid frame are ignored.
        await accepted(customer, {"type": "message", "id": "good-1", "text": "what is my balance",
                                  "colour": "blue", "meta": {"nested": [1, 2]}})
        await customer.wait_text("bot", "checking or savings")
        await accepted(customer, {"type": "message", "id": "good-2", "text": "Savings", "unknown": None})
        await customer.wait_text("bot", "Savings account balance is")
        assert not customer.closed.is_set()
        assert_gapless(customer)

        # Only the two valid messages reached the transcript; none of the refused ones.
        assert customer_texts(system, conversation_id) == ["what is my balance", "Savings"]
        assert not [f for f in customer.others if f["type"] == "accepted" and f["id"] not in ("good-1", "good-2")]
        await customer.disconnect()

    asyncio.run(scenario())


def test_frames_before_hello_are_not_started(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        await customer.connect(system.edge_urls[1])
        await expect_error(customer, {"type": "message", "id": "early-1", "text": "anyone there?"}, "not_started",
                           "hello", frame_id="early-1")
        await expect_error(customer, {"type": "ack", "seq": 3}, "not_started", "hello")
        await expect_error(customer, {"type": "end"}, "not_started", "hello")
        await ping(customer)  # a keep-alive needs no conversation

        await customer.send({"type": "hello"})
        welcome = await customer.wait_other(lambda f: f["type"] == "welcome")
        assert welcome["state"] == "bot" and welcome["last_seq"] == 0
        customer.welcome = welcome
        await accepted(customer, {"type": "message", "id": "after-hello", "text": "what is my balance"})
        await customer.wait_text("bot", "checking or savings")
        # The message sent before hello was refused, not queued.
        assert customer_texts(system, welcome["conversation_id"]) == ["what is my balance"]
        await customer.disconnect()

    asyncio.run(scenario())


def test_too_large_frame_keeps_the_socket_and_the_hard_limit_closes_it_with_1009(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        welcome = await customer.hello(system.edge_urls[0])
        conversation_id = welcome["conversation_id"]

        big = {"type": "message", "id": "big-1", "text": "x" * 20_000}
        await expect_error(customer, big, "too_large", "16384")
        near_hard_limit = {"type": "message", "id": "big-2", "text": "y" * 60_000}  # under 64 KiB
        await expect_error(customer, near_hard_limit, "too_large", "16384")
        await ping(customer)

        # A frame that fits, but a message longer than Lex takes (1024 characters) while the bot answers:
        # refused now, with the limit named, instead of accepted and dead-lettered by Lex.
        frame_limit = "z" * (16 * 1024 - len(json.dumps({"type": "message", "id": "fits", "text": ""})))
        await expect_error(customer, {"type": "message", "id": "fits", "text": frame_limit}, "too_large", "1024",
                           frame_id="fits")
        at_limit = "z" * 1024
        await accepted(customer, {"type": "message", "id": "fits", "text": at_limit})
        await accepted(customer, {"type": "message", "id": "small", "text": "what is my balance"})
        await customer.wait_text("bot", "checking or savings")
        await eventually(lambda: customer_texts(system, conversation_id) == [at_limit, "what is my balance"])

        # Beyond 4 x 16 KiB the server does not read on: it closes the socket with 1009 (message too big).
        assert customer.ws is not None
        await customer.ws.send(json.dumps({"type": "message", "id": "huge", "text": "h" * 100_000}))
        await asyncio.wait_for(customer.closed.wait(), 10)
        assert customer.ws.close_code == 1009, (customer.ws.close_code, customer.ws.close_reason)
        assert customer_texts(system, conversation_id) == [at_limit, "what is my balance"]

        # The conversation itself is fine: resume on a new socket and go on.
        resumed = await customer.resume(system.edge_urls[1])
        assert resumed["type"] == "welcome" and resumed["conversation_id"] == conversation_id
        await accepted(customer, {"type": "message", "id": "after-1009", "text": "Checking"})
        await customer.wait_text("bot", "Checking account balance is")
        assert customer_texts(system, conversation_id) == [at_limit, "what is my balance", "Checking"]
        await customer.disconnect()

    asyncio.run(scenario())


def test_resume_with_bad_tokens_is_invalid_token_and_hello_still_works(system: System) -> None:
    async def scenario() -> None:
        owner = Customer()
        real = await owner.hello(system.edge_urls[0])
        await owner.disconnect()
        token = real["resume_token"]
        conversation_id = real["conversation_id"]
        signed, _, mac = token.rpartition(".")
        altered_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
        secret = system.env["LEXDESK_RESUME_TOKEN_SECRET"].encode()
        missing_id = str(uuid.uuid4())
        bad_tokens = [
            "garbage",
            "not.a.token",
            f"{signed}.{altered_mac}",  # one character of the signature changed
            token.replace(conversation_id, missing_id),  # a real signature on another id
            tokens.issue(secret, missing_id),  # well signed, but no such conversation
            tokens.issue(secret, "x" * 300),  # well signed, longer than any conversation id
        ]

        customer = Customer()
        await customer.connect(system.edge_urls[1])
        for bad in bad_tokens:
            await expect_error(customer, {"type": "resume", "resume_token": bad, "last_seq": 0}, "invalid_token",
                               "token")
        await expect_error(customer, {"type": "resume", "resume_token": "", "last_seq": 0}, "bad_frame",
                           "resume_token")
        await expect_error(customer, {"type": "resume", "resume_token": token, "last_seq": -1}, "bad_frame",
                           "last_seq")
        await expect_error(customer, {"type": "message", "id": "m1", "text": "hi"}, "not_started",
                           frame_id="m1")

        await customer.send({"type": "hello"})
        welcome = await customer.wait_other(lambda f: f["type"] == "welcome")
        customer.welcome = welcome
        assert welcome["state"] == "bot" and welcome["conversation_id"] not in (conversation_id, missing_id)
        # A started socket refuses a second hello or resume; the conversation goes on.
        await expect_error(customer, {"type": "hello"}, "bad_frame", "already")
        await expect_error(customer, {"type": "resume", "resume_token": token, "last_seq": 0}, "bad_frame",
                           "already")
        await accepted(customer, {"type": "message", "id": "after-bad-resume", "text": "what is my balance"})
        await customer.wait_text("bot", "checking or savings")
        assert customer_texts(system, welcome["conversation_id"]) == ["what is my balance"]
        assert customer_texts(system, conversation_id) == []
        assert [f["type"] for f in customer.others].count("welcome") == 1
        await customer.disconnect()

    asyncio.run(scenario())


def test_rate_limit_refuses_some_and_accepted_ones_are_exactly_the_stored_ones(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        welcome = await customer.hello(system.edge_urls[0])
        conversation_id = welcome["conversation_id"]
        ids = [f"burst-{n}" for n in range(30)]
        for message_id in ids:  # 30 in well under 10 s, without waiting for answers
            await customer.send({"type": "message", "id": message_id, "text": f"burst message {message_id}"})
        for message_id in ids:
            await customer.wait_other(lambda f, i=message_id: f.get("id") == i and f["type"] in ("accepted", "error"))
        # (A `status` frame later says what became of an accepted one: not an answer to the frame.)
        answers = {i: [f for f in customer.others if f.get("id") == i and f["type"] != "status"] for i in ids}
        assert all(len(a) == 1 for a in answers.values()), answers  # one answer per message
        taken = [i for i in ids if answers[i][0]["type"] == "accepted"]
        limited = [i for i in ids if answers[i][0]["type"] == "error"]
        assert all(answers[i][0]["code"] == "rate_limited" and "later" in answers[i][0]["message"] for i in limited)
        assert limited and len(taken) >= 20, (taken, limited)
        assert taken == ids[:len(taken)]  # the bucket empties: the first ones pass, the rest are refused

        # Exactly the accepted ones are stored: none lost, none extra.
        expected = sorted(f"burst message {i}" for i in taken)
        await eventually(lambda: len(customer_texts(system, conversation_id)) >= len(taken))
        assert sorted(customer_texts(system, conversation_id)) == expected
        await ping(customer)

        # Later, a refused message can be sent again (same id) and counts once.
        await asyncio.sleep(1.0)
        await accepted(customer, {"type": "message", "id": limited[0], "text": f"burst message {limited[0]}"})
        await eventually(lambda: len(customer_texts(system, conversation_id)) > len(taken))
        assert sorted(customer_texts(system, conversation_id)) == sorted([*expected, f"burst message {limited[0]}"])
        await customer.disconnect()

    asyncio.run(scenario())


def test_message_on_an_ended_conversation_is_conversation_closed(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        welcome = await customer.hello(system.edge_urls[0])
        conversation_id = welcome["conversation_id"]
        await customer.say("what is my balance")
        await customer.wait_text("bot", "checking or savings")
        await customer.send({"type": "end"})
        ended = await customer.wait_event("conversation_ended")
        assert ended["by"] == "customer"
        await asyncio.wait_for(customer.closed.wait(), 10)

        resumed = await customer.resume(system.edge_urls[1])
        assert resumed["type"] == "welcome" and resumed["state"] == "closed", resumed
        assert resumed["conversation_id"] == conversation_id
        await expect_error(customer, {"type": "message", "id": "too-late", "text": "hello again?"},
                           "conversation_closed", "ended", frame_id="too-late")
        await ping(customer)
        await expect_error(customer, {"type": "message", "id": "too-late-2", "text": "still there?"},
                           "conversation_closed", frame_id="too-late-2")
        state = conversation(system, conversation_id)
        assert state["state"] == "closed" and state["closed_by"] == "customer"
        assert customer_texts(system, conversation_id) == ["what is my balance"]
        await customer.disconnect()

    asyncio.run(scenario())


def test_other_paths_than_ws_are_refused_with_404(system: System) -> None:
    async def scenario() -> None:
        base = system.edge_urls[0].removesuffix("/ws")
        for path in ("/nope", "/", "/ws/extra", "/WS"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(base + path, open_timeout=10):
                    pass
            assert refused.value.response.status_code == 404, path
        async with connect(system.edge_urls[1] + "?client=test", open_timeout=10) as ws:  # a query is fine
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}

    asyncio.run(scenario())


# -- the callback receiver (docs/protocol.md §3) --------------------------------------------------------


def test_bad_callbacks_are_refused_without_effect_and_a_good_one_arrives_once(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        path = f"/talkdesk/conversations/{td_id}/messages"

        def message(content: str) -> dict[str, Any]:
            return {"id": uuid.uuid4().hex, "content": content, "author_name": "Alex"}

        with httpx.Client(base_url=system.http_url, timeout=10) as anonymous, system.callback() as callback:
            # Authentication: missing or wrong key.
            for headers in ({}, {"X-Api-Key": "wrong-key"}, {"X-Api-Key": system.api_key + "x"},
                            {"X-Api-Key": ""}):
                for url, body in ((path, message("refused: bad key")),
                                  ("/talkdesk/webhook", {"event": "message_created", "conversation_id": td_id,
                                                         "payload": message("refused: bad key on webhook")}),
                                  (f"/talkdesk/conversations/{td_id}/close", {"reason": "bad key"})):
                    response = anonymous.post(url, json=body, headers=headers)
                    assert response.status_code == 401, (headers, url, response.text)
                    assert response.json()["error"] == "unauthorized" and response.json()["message"]

            # Unknown Talkdesk conversation.
            for url in ("/talkdesk/conversations/no-such-conversation/messages",
                        "/talkdesk/conversations/no-such-conversation/agent-joined",
                        "/talkdesk/conversations/no-such-conversation/close"):
                response = callback.post(url, json=message("refused: unknown conversation"))
                assert response.status_code == 404, (url, response.text)
                assert response.json()["error"] == "unknown_conversation"
            response = callback.post("/talkdesk/webhook", json={
                "event": "message_created", "conversation_id": "no-such-conversation",
                "payload": message("refused: unknown conversation on webhook")})
            assert response.status_code == 404 and response.json()["error"] == "unknown_conversation"

            # Malformed bodies: 422 naming the field.
            response = callback.post(path, json={"id": "td-no-content", "author_name": "Alex"})
            assert response.status_code == 422 and field_names(response) == ["content"], response.text
            response = callback.post(path, json={"id": "td-empty", "content": ""})
            assert response.status_code == 422 and field_names(response) == ["content"], response.text
            response = callback.post(path, json={"id": 12345, "content": "refused: numeric id"})
            assert response.status_code == 422 and field_names(response) == ["id"], response.text
            response = callback.post(path, json={"content": "refused: no id"})
            assert response.status_code == 422 and field_names(response) == ["id"], response.text
            response = callback.post(path, content=b"refused: this is not JSON",
                                     headers={"Content-Type": "application/json"})
            assert response.status_code == 422 and field_names(response), response.text
            response = callback.post(path, json=["refused: a list"])
            assert response.status_code == 422 and field_names(response) == ["body"], response.text

            # Too large: declared with Content-Length, and streamed chunked without it.
            big = message("refused: " + "b" * 70_000)
            response = callback.post(path, json=big)
            assert response.request.headers.get("content-length")
            assert response.status_code == 413 and response.json()["error"] == "too_large", response.text[:200]

            # The webhook: unknown event, missing payload.content, then a valid message_created.
            response = callback.post("/talkdesk/webhook", json={
                "event": "message_deleted", "conversation_id": td_id, "payload": message("refused: bad event")})
            assert response.status_code == 422 and field_names(response) == ["event"], response.text
            response = callback.post("/talkdesk/webhook", json={
                "event": "message_created", "conversation_id": td_id, "payload": {"id": "td-wh-no-content"}})
            assert response.status_code == 422 and field_names(response) == ["payload.content"], response.text
            response = callback.post("/talkdesk/webhook", json={"event": "message_created",
                                                                "payload": message("refused: no conversation")})
            assert response.status_code == 422 and field_names(response) == ["conversation_id"], response.text
            response = callback.post("/talkdesk/webhook", json={
                "event": "message_created", "conversation_id": td_id,
                "payload": {"id": "td-wh-1", "content": "hello through the webhook", "author_name": "Alex"}})
            assert response.status_code == 202 and response.json() == {"status": "accepted"}, response.text
            await customer.wait_text("agent", "hello through the webhook")

            # The operator API wants the bearer token; /healthz does not.
            for url in ("/api/conversations", f"/api/conversations/{customer.welcome['conversation_id']}",
                        "/readyz", "/metrics"):
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": system.admin_token},
                                {"Authorization": f"Basic {system.admin_token}"}, {"X-Api-Key": system.api_key}):
                    response = anonymous.get(url, headers=headers)
                    assert response.status_code == 401, (url, headers, response.text)
                    assert response.json()["error"] == "unauthorized"
            assert anonymous.get("/healthz").json() == {"status": "ok"}

            # After all that, a valid agent message on the same conversation arrives exactly once.
            response = callback.post(path, json={"id": "td-final-1", "content": "the good one", "author_name": "Alex"})
            assert response.status_code == 202 and response.json() == {"status": "accepted"}, response.text

        await customer.wait_text("agent", "the good one")
        await customer.say("marker")  # the agent's echo comes after everything queued before it
        await customer.wait_text("agent", "You said: marker")
        agent_texts = customer.texts("agent")
        assert agent_texts.count("the good one") == 1 and agent_texts.count("hello through the webhook") == 1
        shown = " ".join(customer.texts())
        assert "refused" not in shown, agent_texts
        stored = [m["text"] for m in conversation(system, customer.welcome["conversation_id"])["transcript"]]
        assert not [t for t in stored if "refused" in t], stored
        assert stored.count("the good one") == 1
        assert conversation(system, customer.welcome["conversation_id"])["state"] == "agent_active"
        assert_gapless(customer)
        await customer.disconnect()

    asyncio.run(scenario())


def test_callbacks_for_a_closed_conversation_are_409(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[1])
        with system.callback() as callback:
            response = callback.post(f"/talkdesk/conversations/{td_id}/close", json={"reason": "resolved"})
            assert response.status_code == 202, response.text
            ended = await customer.wait_event("conversation_ended")
            assert ended["by"] == "agent"
            await asyncio.wait_for(customer.closed.wait(), 10)

            base = f"/talkdesk/conversations/{td_id}"
            calls = [
                (f"{base}/messages", {"id": "td-late-1", "content": "too late"}),
                (f"{base}/agent-joined", {"agent_name": "Alex"}),
                (f"{base}/close", {"reason": "again"}),
                ("/talkdesk/webhook", {"event": "message_created", "conversation_id": td_id,
                                       "payload": {"id": "td-late-2", "content": "too late via webhook"}}),
                ("/talkdesk/webhook", {"event": "conversation_ended", "conversation_id": td_id, "payload": {}}),
            ]
            for url, body in calls:
                response = callback.post(url, json=body)
                assert response.status_code == 409, (url, response.text)
                assert response.json()["error"] == "conversation_closed" and response.json()["message"]
        stored = [m["text"] for m in conversation(system, customer.welcome["conversation_id"])["transcript"]]
        assert not [t for t in stored if "too late" in t], stored

    asyncio.run(scenario())




def test_chunked_body_over_64_kib_is_413(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])

        def chunks() -> Iterator[bytes]:
            yield b'{"id": "td-chunked", "content": "refused: chunked '
            for _ in range(20):
                yield b"c" * 4096
            yield b'"}'

        with system.callback() as callback:
            response = callback.post(f"/talkdesk/conversations/{td_id}/messages", content=chunks(),
                                     headers={"Content-Type": "application/json"})
        assert "content-length" not in response.request.headers
        assert response.request.headers.get("transfer-encoding") == "chunked"
        assert response.status_code == 413 and response.json()["error"] == "too_large", response.text[:200]
        await customer.disconnect()

    asyncio.run(scenario())


def test_body_that_is_not_json_names_the_body(system: System) -> None:
    with system.callback() as callback:
        response = callback.post("/talkdesk/conversations/anything/messages", content=b"this is not JSON",
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and field_names(response) == ["body"], response.text


def test_nul_character_in_text_is_a_bad_frame_not_unavailable(system: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        await expect_error(customer, '{"type": "message", "id": "nul-1", "text": "a\\u0000b"}', "bad_frame", "text",
                           frame_id="nul-1")
        with system.callback() as callback:
            response = callback.post(f"/talkdesk/conversations/{td_id}/messages",
                                     json={"id": "td-nul-1", "content": "a\u0000b"})
        assert response.status_code == 422 and field_names(response) == ["content"], response.text
        await customer.disconnect()

    asyncio.run(scenario())


def test_nul_character_in_hello_gets_an_error_frame_not_a_crash(system: System) -> None:
    async def scenario() -> None:
        hellos = ('{"type": "hello", "customer": {"name": "a\\u0000b"}}', '{"type": "hello", "locale": "e\\u0000"}')
        for hello in hellos:
            customer = Customer()
            await customer.connect(system.edge_urls[0])
            await expect_error(customer, hello, "bad_frame")
            await ping(customer)
            await customer.disconnect()

    asyncio.run(scenario())


def test_json_nested_too_deep_is_malformed_before_it_is_parsed(system: System) -> None:
    """Found by `lexdesk fuzz`: a hello whose attributes nested a few hundred levels deep parsed, then
    broke the redaction's walk (RecursionError) and was answered `unavailable`, as if a resend could
    help; a deep body's answer depended on where the interpreter's recursion limit fell. Both now
    refuse it as malformed, at a fixed depth (shared/protocol.py MAX_JSON_DEPTH)."""
    from shared.protocol import MAX_JSON_DEPTH

    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)

    async def frames() -> None:
        customer = Customer()
        await customer.connect(system.edge_urls[0])
        hello = '{"type": "hello", "attributes": {"k": ' + deep + "}}"
        await expect_error(customer, hello, "bad_frame", f"deeper than {MAX_JSON_DEPTH}")
        await expect_error(customer, '{"type": "", "x": ' + deep + "}", "bad_frame", f"deeper than {MAX_JSON_DEPTH}")
        at_the_limit = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)  # inside the frame's object
        await expect_error(customer, '{"type": "nope", "x": ' + at_the_limit + "}", "unknown_type")
        await customer.hello(system.edge_urls[0], attributes={"page": {"section": ["a", {"b": "c"}]}})
        await customer.disconnect()

    asyncio.run(frames())
    with system.callback() as callback:
        response = callback.post("/talkdesk/conversations/no-such-conversation/messages",
                                 content='{"id": "m", "content": "x", "extra": ' + deep + "}",
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert f"deeper than {MAX_JSON_DEPTH}" in response.json()["message"]
