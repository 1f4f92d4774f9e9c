"""The customer's typing shown to the agent, end to end over PostgreSQL and RabbitMQ with the real edge,
worker and Talkdesk emulator (LEXDESK_FORWARD_CUSTOMER_TYPING is on in the harness, as `lexdesk up` has
it): a `typing` frame reaches the agent's side while an agent has the chat; a flood of them from one
socket costs about one Talkdesk call a second, and the socket is never answered with an error."""

from __future__ import annotations

import asyncio
import time

from tests.integration.journeys import eventually, reach_agent, talkdesk_record
from tools.harness.customer import Customer
from tools.harness.system import System


def typing_changes(system: System, talkdesk_id: str) -> list[bool]:
    return [e["active"] for e in talkdesk_record(system, talkdesk_id)["events"] if e["type"] == "customer_typing"]


def test_the_customers_typing_reaches_the_agent_and_a_flood_of_it_is_throttled(system: System) -> None:
    async def journey() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[1])
        await customer.send({"type": "typing", "active": True})
        await eventually(lambda: talkdesk_record(system, td_id)["customer_typing"] is True)
        await asyncio.sleep(1.2)  # the edge forwards at most one change a second
        await customer.send({"type": "typing", "active": False})
        await eventually(lambda: talkdesk_record(system, td_id)["customer_typing"] is False)
        assert typing_changes(system, td_id) == [True, False]

        # Attack: a socket flipping its typing 200 times a second for two seconds.
        await asyncio.sleep(1.2)
        started = time.monotonic()
        for n in range(400):
            await customer.send({"type": "typing", "active": n % 2 == 0})
            await asyncio.sleep(0.005)
        flooded_for = time.monotonic() - started
        await customer.say("a real message")  # everything before it has been handled by the edge
        await asyncio.sleep(1.0)  # and the forwarded ones have reached a worker
        changes = typing_changes(system, td_id)[2:]
        assert 1 <= len(changes) <= flooded_for + 2, changes
        assert not [f for f in customer.others if f["type"] == "error"]
        assert not customer.closed.is_set()
        await customer.disconnect()

    asyncio.run(journey())
