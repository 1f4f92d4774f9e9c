"""The seed's AWS deployment on lexdesk: the Lex code hook starts the live chat (docs/protocol.md §3,
`POST /lex/code-hook`, and the Lambda handler), then a client speaking exactly the Lex Web UI's
dialect attaches on `/talkdesk?conversationId=<talkdesk_conversation_id>` (§2). And the attacks on
that path: someone else's conversation, an id that is not ours, a second socket."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from typing import Any
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect

from shared import handles
from tests.integration.journeys import eventually, reach_agent, talkdesk_id, talkdesk_record
from tools.harness.customer import Customer
from tools.harness.system import ROOT, System


def code_hook_event(session_id: str, intent: str = "TalkToAgent", text: str = "I want to talk to a person",
                    sentiment: str = "NEGATIVE") -> dict[str, Any]:
    """What Lex V2 sends a fulfillment code hook (the fields of the AWS docs' input event format)."""
    return {
        "messageVersion": "1.0",
        "invocationSource": "FulfillmentCodeHook",
        "inputMode": "Text",
        "responseContentType": "text/plain; charset=utf-8",
        "sessionId": session_id,
        "inputTranscript": text,
        "bot": {"id": "BANKINGBOT", "name": "BankingBot", "aliasId": "TSTALIASID", "aliasName": "TestBotAlias",
                "localeId": "en_US", "version": "DRAFT"},
        "interpretations": [{"intent": {"name": intent, "slots": {}, "state": "ReadyForFulfillment",
                                        "confirmationState": "None"},
                             "nluConfidence": 0.93, "interpretationSource": "Lex",
                             "sentimentResponse": {"sentiment": sentiment, "sentimentScore": {
                                 "positive": 0.01, "negative": 0.9, "neutral": 0.08, "mixed": 0.01}}}],
        "proposedNextState": None,
        "requestAttributes": {},
        "sessionState": {"sessionAttributes": {"customer_name": "Lee"},
                         "intent": {"name": intent, "slots": {}, "state": "ReadyForFulfillment",
                                    "confirmationState": "None"},
                         "originatingRequestId": str(uuid.uuid4())},
    }


def call_code_hook(system: System, event: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{system.http_url}/lex/code-hook", json=event, headers={"X-Api-Key": system.api_key},
                          timeout=20)
    assert response.status_code == 200, response.text
    return dict(response.json())


def lexwebui_url(system: System, value: str, edge: int = 1) -> str:
    return system.edge_urls[edge].replace("/ws", f"/talkdesk?conversationId={quote(value, safe='')}")


async def next_event(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def closed_with(url: str) -> tuple[int | None, str | None]:
    async with connect(url) as ws:
        await asyncio.wait_for(ws.wait_closed(), 10)
        return ws.close_code, ws.close_reason


def conversation_count(system: System) -> int:
    with system.admin() as admin:
        return len(admin.get("/api/conversations", params={"limit": 500}).json()["conversations"])


def test_the_code_hook_starts_the_live_chat_and_the_lex_web_ui_chats_with_the_agent(system: System) -> None:
    session_id = f"lexwebui-{uuid.uuid4().hex}"
    answer = call_code_hook(system, code_hook_event(session_id))
    state = answer["sessionState"]
    assert state["dialogAction"] == {"type": "Close"}
    assert state["intent"]["name"] == "TalkToAgent" and state["intent"]["state"] == "Fulfilled"
    assert state["sessionAttributes"]["customer_name"] == "Lee"  # the bot's own attributes are kept
    handle = state["sessionAttributes"]["talkdesk_conversation_id"]
    assert handle == quote(handle, safe="")  # URL-safe: the Lex Web UI puts it in the query string as is
    assert answer["messages"][0]["contentType"] == "PlainText"
    # Lex retrying the hook gets the same handle, and Talkdesk gets one conversation, not two.
    assert call_code_hook(system, code_hook_event(session_id))["sessionState"]["sessionAttributes"][
        "talkdesk_conversation_id"] == handle

    async def journey() -> None:
        async with connect(lexwebui_url(system, handle)) as ws:
            greeting = await next_event(ws)
            assert greeting == {"event_type": "message_created", "author_name": "Alex",
                                "content": "Hi, this is Alex. How can I help you today?"}
            await ws.send(json.dumps({"action": "onMessage", "message": "hi from the Lex Web UI",
                                      "conversationId": handle}))
            await ws.send("not json at all")  # ignored: the dialect has no error frames
            assert await next_event(ws) == {"event_type": "message_created", "author_name": "Alex",
                                            "content": "You said: hi from the Lex Web UI"}
            await ws.close(4000)  # the Lex Web UI ends a live chat so

    asyncio.run(journey())
    conversation_id = handles.verify(system.env["LEXDESK_RESUME_TOKEN_SECRET"], handle)
    assert conversation_id is not None
    with system.admin() as admin:
        ours = admin.get(f"/api/conversations/{conversation_id}").json()
    td_id = ours["talkdesk_conversation_id"]
    record = asyncio.run(eventually(lambda: (r := talkdesk_record(system, td_id))["status"] == "ended" and r))
    assert [m["content"] for m in record["customer_messages"]] == ["hi from the Lex Web UI"]
    # What the agent was handed: what the customer said to the bot, the intent and the sentiment.
    assert [(m["type"], m["content"]) for m in record["previous_messages"]] == [
        ("USER", "I want to talk to a person")]
    assert "TalkToAgent" in record["context_parameters"]["contact_reason"]
    assert "NEGATIVE" in record["context_parameters"]["contact_reason"]
    assert record["context_parameters"]["contact_name"] == "Lee"
    with system.admin() as admin:
        ended = admin.get(f"/api/conversations/{conversation_id}").json()
    assert ended["state"] == "closed" and ended["closed_by"] == "customer"


def test_the_lambda_handler_answers_what_the_http_route_answers(system: System) -> None:
    event = code_hook_event(f"lambda-{uuid.uuid4().hex}")
    run = subprocess.run(
        [sys.executable, "-c", "import json, sys; from services.lambda_codehook import handler; "
                               "print(json.dumps(handler(json.load(sys.stdin), None)))"],
        input=json.dumps(event), capture_output=True, text=True, env=system.env, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    handle = answer["sessionState"]["sessionAttributes"]["talkdesk_conversation_id"]
    assert handles.verify(system.env["LEXDESK_RESUME_TOKEN_SECRET"], handle) is not None
    # Other intents are not ours to fulfil: Lex carries on with its own configuration.
    other = call_code_hook(system, code_hook_event(f"lambda-{uuid.uuid4().hex}", intent="CheckBalance"))
    assert other["sessionState"]["dialogAction"] == {"type": "Delegate"}
    assert "talkdesk_conversation_id" not in other["sessionState"]["sessionAttributes"]


def test_the_code_hook_checks_the_key_before_the_body(system: System) -> None:
    for headers in ({}, {"X-Api-Key": ""}, {"X-Api-Key": "wrong-key-wrong-key"}):
        response = httpx.post(f"{system.http_url}/lex/code-hook", content=b"{not json", headers=headers, timeout=10)
        assert response.status_code == 401, (headers, response.text)
    response = httpx.post(f"{system.http_url}/lex/code-hook", json={"sessionId": "x"},
                          headers={"X-Api-Key": system.api_key}, timeout=10)
    assert response.status_code == 422 and "sessionState" in response.json()["message"]


def test_attack_a_talkdesk_id_someone_knows_takes_over_nothing(system: System) -> None:
    """The takeover: knowing a live chat's Talkdesk id was enough to attach to it, receive the agent's
    messages, write as the customer and end the chat. Now the id is refused with 4401 and the real
    customer keeps the chat."""

    async def attack() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        before = conversation_count(system)
        for value in (td_id, customer.welcome["conversation_id"],  # type: ignore[index]
                      f"started-by-the-bot-{uuid.uuid4()}", "..%2F..%2Fevil%2Fpath%3Fx%3D"):
            code, reason = await closed_with(lexwebui_url(system, value))
            assert code == 4401, (value, code, reason)
        assert conversation_count(system) == before  # no row for anyone who could not prove ownership
        # The customer is still the one the agent talks to.
        await customer.say("are you still there?")
        await customer.wait_text("agent", "You said: are you still there?")
        assert not customer.closed.is_set()

    asyncio.run(attack())


def test_attack_a_forged_or_altered_handle_is_refused(system: System) -> None:
    async def attack() -> None:
        genuine = call_code_hook(system, code_hook_event(f"forge-{uuid.uuid4().hex}"))[
            "sessionState"]["sessionAttributes"]["talkdesk_conversation_id"]
        prefix, conversation_hex, mac = genuine.split("_", 2)
        someone_else = uuid.uuid4().hex
        forged = [
            f"{prefix}_{someone_else}_{mac}",  # another conversation, the same signature
            f"{prefix}_{conversation_hex}_{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # one character off
            handles.issue("not-the-servers-secret-at-all", str(uuid.UUID(conversation_hex))),  # wrong key
            f"{prefix}_{conversation_hex}_",
        ]
        for value in forged:
            code, _ = await closed_with(lexwebui_url(system, value))
            assert code == 4401, value

    asyncio.run(attack())


def test_a_second_lex_web_ui_tab_shows_the_chat_too(system: System) -> None:
    """Another Lex Web UI tab of the live chat: both stay open and both are shown the agent's messages.
    (What was written to one counts as shown, the dialect having no acknowledgements: a tab opened late
    is sent only what no tab has been written yet.)"""

    async def tabs() -> None:
        handle = call_code_hook(system, code_hook_event(f"tabs-{uuid.uuid4().hex}"))[
            "sessionState"]["sessionAttributes"]["talkdesk_conversation_id"]
        first = await connect(lexwebui_url(system, handle, edge=0))
        greeting = await next_event(first)
        assert greeting["event_type"] == "message_created"
        async with connect(lexwebui_url(system, handle, edge=1)) as second:
            await second.send(json.dumps({"action": "onMessage", "message": "from the second tab"}))
            for tab in (first, second):
                contents = [(await next_event(tab))["content"]]
                while contents[-1] != "You said: from the second tab":
                    contents.append((await next_event(tab))["content"])
                assert set(contents) <= {"Hi, this is Alex. How can I help you today?", "You said: from the second tab"}
            assert first.close_code is None
        await first.close()

    asyncio.run(tabs())


def test_lex_web_ui_without_a_conversation_id_is_refused(system: System) -> None:
    code, _ = asyncio.run(closed_with(system.edge_urls[0].replace("/ws", "/talkdesk")))
    assert code == 1008


def test_talkdesk_ids_reach_our_records_but_never_a_browser(system: System) -> None:
    """Talkdesk's id is ours to keep: the code hook answers a handle, not the Talkdesk id."""

    async def flow() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        assert td_id == talkdesk_id(system, customer)
        assert not any(td_id in json.dumps(frame) for frame in customer.shown + customer.others)

    asyncio.run(flow())
