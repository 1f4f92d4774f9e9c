"""Dead letters on the real system: a Talkdesk outage dead-letters a message, the operator API lists
and replays it, the customer gets the agent's answer once; poison task messages end up in RabbitMQ's
dead-letter queue instead of a retry loop or the void."""

from __future__ import annotations

import asyncio
import time

import httpx
from kombu import Connection

from shared.celery_app import DEAD_LETTER_QUEUE, build_celery_app
from shared.settings import load_settings
from tests.integration.journeys import eventually, reach_agent, talkdesk_record
from tools.harness.customer import Customer
from tools.harness.system import System

NO_FAULTS = {"error_rate": 0.0, "rate_limit_rate": 0.0, "stall_rate": 0.0}


def test_operator_lists_and_replays_a_dead_letter_once(system: System) -> None:
    async def journey() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        conversation_id = customer.welcome["conversation_id"] if customer.welcome else ""
        with system.talkdesk() as talkdesk:
            talkdesk.put("/_emulator/faults", json={**NO_FAULTS, "error_rate": 1.0}).raise_for_status()
        try:
            message_id = await customer.say("is anyone there?")
            with system.admin() as admin:
                listed = await eventually(lambda: (r := admin.get("/api/dead-letters", params={
                    "conversation_id": conversation_id}).json())["total"] == 1 and r, timeout=60)
            # LEXDESK_RETRY_FOR=6s (conftest.py) has passed: the customer reads that it failed.
            failed = await customer.wait_status(message_id, "failed")
            assert failed["detail"] == "This message could not be delivered to the agent."
        finally:
            with system.talkdesk() as talkdesk:
                talkdesk.put("/_emulator/faults", json=NO_FAULTS).raise_for_status()
        dead = listed["dead_letters"][0]
        assert (dead["body"], dead["error_class"], dead["destination"]) == ("is anyone there?", "transient",
                                                                             "talkdesk")
        assert dead["attempts"] >= 2 and listed["counts"] == {"transient": 1}
        with system.admin() as admin:
            dry = admin.post("/api/dead-letters/replay", json={"conversation_id": conversation_id, "dry_run": True})
            assert dry.json()["matched"] == 1 and dry.json()["replayed"] == 0
            first = admin.post("/api/dead-letters/replay", json={"ids": [dead["id"]]}).json()
            assert (first["matched"], first["replayed"]) == (1, 1)
            await customer.wait_text("agent", "You said: is anyone there?", timeout=30)
            await customer.wait_status(message_id, "delivered")  # the replay got through: the bubble says so
            second = admin.post("/api/dead-letters/replay", json={"ids": [dead["id"]]}).json()
            assert (second["matched"], second["replayed"]) == (0, 0)
            bad = admin.post("/api/dead-letters/replay", json={"since": "last tuesday"})
            assert bad.status_code == 422 and "since" in bad.json()["message"]
            transcript = admin.get(f"/api/conversations/{conversation_id}").json()["transcript"]
        replayed = [m for m in transcript if m["text"] == "is anyone there?"]
        assert [(m["status"], m["replayed"]) for m in replayed] == [("delivered", True)]
        await customer.say("marker")
        await customer.wait_text("agent", "You said: marker")
        assert customer.texts("agent").count("You said: is anyone there?") == 1
        assert [m["content"] for m in talkdesk_record(system, td_id)["customer_messages"]].count(
            "is anyone there?") == 1
        await customer.disconnect()

    asyncio.run(journey())


def test_operator_api_needs_the_admin_token(system: System) -> None:
    for path in ("/api/dead-letters", "/api/conversations", "/metrics", "/readyz"):
        assert httpx.get(f"{system.http_url}{path}").status_code == 401
        assert httpx.get(f"{system.http_url}{path}", headers={"Authorization": "Bearer nope"}).status_code == 401
    with system.admin() as admin:
        ready = admin.get("/readyz").json()
        assert ready["status"] == "ready" and {"database", "broker", "sweep"} <= set(ready["checks"]), ready
        assert set(ready["checks"].values()) == {"ok"}, ready
        metrics = admin.get("/metrics").text
    assert "lexdesk_conversations" in metrics and "lexdesk_messages" in metrics


def test_poison_task_messages_go_to_the_dead_letter_queue(system: System) -> None:
    broker_url = system.env["LEXDESK_BROKER_URL"]
    app = build_celery_app(load_settings({"LEXDESK_BROKER_URL": broker_url}))
    with Connection(broker_url) as connection:
        dead = DEAD_LETTER_QUEUE(connection.default_channel)
        dead.declare()
        dead.purge()
        producer = connection.Producer()
        # 1. Not even JSON.
        producer.publish(b"{this is not json", exchange="routing", routing_key="routing",
                         content_type="application/json", content_encoding="utf-8")
        # 2. A task nobody knows.
        app.send_task("routing.no_such_task", kwargs={"x": 1})
        # 3. A known task with arguments it cannot take: it raises, and is rejected, not acked.
        app.send_task("routing.customer_ack", kwargs={"conversation": "wrong-name"})
        received = []
        deadline = time.monotonic() + 30
        while len(received) < 3 and time.monotonic() < deadline:
            message = dead.get(no_ack=True)  # raw: the first one cannot be decoded, by design
            if message is None:
                time.sleep(0.2)
            else:
                received.append(message)
    assert len(received) == 3, received
    bodies = [m.body.decode() if isinstance(m.body, bytes) else m.body for m in received]
    assert "{this is not json" in bodies
    tasks = sorted(str(m.headers.get("task")) for m in received if m.headers.get("task"))
    assert tasks == ["routing.customer_ack", "routing.no_such_task"]
