"""Waiting for an agent, through the real processes on PostgreSQL + RabbitMQ, with an emulated agent
who never comes: the customer hears from the queue every LEXDESK_QUEUE_UPDATE_INTERVAL with their
place in it, and after LEXDESK_QUEUE_TIMEOUT is handed back to the bot, the Talkdesk conversation ended."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.integration.journeys import eventually, talkdesk_record
from tools.harness.backends import backend
from tools.harness.customer import Customer
from tools.harness.system import System

INTERVAL, TIMEOUT = 2, 7


@pytest.fixture(scope="module")
def nobody_answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("agent-queue")
    with backend("postgres", workdir, label="queue") as shape, System(
            workdir, shape.database_url, shape.broker_url, agent_join_delay=3600,
            extra_env={"LEXDESK_QUEUE_UPDATE_INTERVAL": f"{INTERVAL}s",
                       "LEXDESK_QUEUE_TIMEOUT": f"{TIMEOUT}s"}) as system:
        yield system


async def ask_for_an_agent(system: System, name: str) -> Customer:
    customer = Customer()
    await customer.hello(system.edge_urls[0], customer={"name": name})
    await customer.say("I want to talk to an agent")
    await customer.wait_event("agent_queued")
    return customer


def test_the_queue_says_where_the_customer_stands_and_gives_up_in_time(nobody_answers: System) -> None:
    system = nobody_answers

    async def journey() -> None:
        first = await ask_for_an_agent(system, "First")
        second = await ask_for_an_agent(system, "Second")
        update = await second.wait_text("system", "You are number 2 in the queue", timeout=INTERVAL + 5)
        assert update["text"] == "Still waiting for an agent. You are number 2 in the queue."
        await first.wait_text("system", "You are number 1 in the queue", timeout=INTERVAL + 5)
        assert not [f for f in first.shown if f["type"] == "event" and f["event"] == "agent_joined"]

        failed = await first.wait_event("handoff_failed", timeout=TIMEOUT + 5)
        assert failed["reason"] == "queue_timeout"
        await first.wait_text("system", "no agent could take your chat")
        # Updates every INTERVAL until the timeout: 3 of them (at 2, 4 and 6 s).
        updates = [t for t in first.texts("system") if t.startswith("Still waiting for an agent")]
        assert len(updates) == TIMEOUT // INTERVAL, first.texts("system")
        # The Talkdesk conversation was ended, and the customer is back with the bot.
        assert first.welcome is not None
        with system.admin() as admin:
            state = admin.get(f"/api/conversations/{first.welcome['conversation_id']}").json()
        assert state["state"] == "handoff_failed" and state["talkdesk_conversation_id"] is None
        with system.talkdesk() as talkdesk:
            listed = talkdesk.get("/_emulator/conversations").json()
        contact = {c["contact"]["name"]: c["id"] for c in listed}
        await eventually(lambda: talkdesk_record(system, contact["First"])["status"] == "ended")
        await first.say("what is my balance")
        await first.wait_text("bot", "checking or savings")
        await second.wait_event("handoff_failed", timeout=TIMEOUT + 5)
        for customer in (first, second):
            await customer.disconnect()

    asyncio.run(journey())
