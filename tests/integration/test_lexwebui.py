"""The Lex Web UI's live-chat dialect on /talkdesk?conversationId=ID (docs/protocol.md §2)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.integration.journeys import eventually, reach_agent, talkdesk_record, transcript
from tools.harness.customer import Customer
from tools.harness.system import System


def lexwebui_url(system: System, talkdesk_id: str) -> str:
    return system.edge_urls[1].replace("/ws", f"/talkdesk?conversationId={talkdesk_id}")


async def next_event(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


def test_lex_web_ui_chats_with_the_agent_and_ends_with_4000(system: System) -> None:
    async def journey() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        async with connect(lexwebui_url(system, td_id)) as ws:
            await ws.send(json.dumps({"action": "onMessage", "message": "hi from the Lex Web UI",
                                      "conversationId": td_id}))
            await ws.send("not json at all")  # ignored: the dialect has no error frames
            event = await next_event(ws)
            assert event == {"event_type": "message_created", "content": "You said: hi from the Lex Web UI",
                             "author_name": "Alex"}
            await ws.close(4000)
        record = await eventually(lambda: (r := talkdesk_record(system, td_id))["status"] == "ended" and r)
        assert [m["content"] for m in record["customer_messages"]] == ["hi from the Lex Web UI"]
        assert transcript(system, customer)["closed_by"] == "customer"

    asyncio.run(journey())


def test_a_talkdesk_conversation_lexdesk_never_saw_is_adopted(system: System) -> None:
    async def journey() -> None:
        td_id = f"started-by-the-bot-{uuid.uuid4()}"
        async with connect(lexwebui_url(system, td_id)) as ws:
            with system.callback() as callback:
                for n, content in enumerate(["Hello, I am Sam.", "How can I help?"]):
                    response = callback.post(f"/talkdesk/conversations/{td_id}/messages",
                                             json={"id": f"{td_id}-{n}", "content": content, "author_name": "Sam"})
                    assert response.status_code == 202, response.text
                first, second = await next_event(ws), await next_event(ws)
                assert [first["content"], second["content"]] == ["Hello, I am Sam.", "How can I help?"]
                assert first["author_name"] == "Sam"
                assert callback.post(f"/talkdesk/conversations/{td_id}/close", json={}).status_code == 202
            assert await next_event(ws) == {"event_type": "conversation_ended"}
        with system.admin() as admin:
            listed = admin.get("/api/conversations", params={"state": "closed"}).json()["conversations"]
        adopted = [c for c in listed if c["talkdesk_conversation_id"] == td_id]
        assert len(adopted) == 1 and adopted[0]["closed_by"] == "agent"
        # Everything written to the Lex Web UI counts as shown: nothing left to resend.
        assert adopted[0]["acked_seq"] == adopted[0]["last_seq"]

    asyncio.run(journey())


def test_lex_web_ui_without_a_conversation_id_is_refused(system: System) -> None:
    async def attempt() -> None:
        async with connect(system.edge_urls[0].replace("/ws", "/talkdesk")) as ws:
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008

    asyncio.run(attempt())
