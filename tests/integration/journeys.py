"""Steps of the BankingBot journey shared by the integration tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tools.harness.customer import Customer
from tools.harness.system import System


async def reach_agent(system: System, customer: Customer, edge_url: str) -> str:
    """Hello, a balance question, then the escalation; returns the Talkdesk conversation id once the
    agent has joined and greeted."""
    welcome = await customer.hello(edge_url, customer={"name": "Ana Silva", "email": "ana@example.com"},
                                   attributes={"page": "/pricing"})
    assert welcome["state"] == "bot" and welcome["last_seq"] == 0
    await customer.say("what is my balance")
    prompt = await customer.wait_text("bot", "checking or savings")
    assert [b["value"] for b in prompt["cards"][0]["buttons"]] == ["Checking", "Savings"]
    assert prompt["lex"] == {"intent": "CheckBalance", "intent_state": "InProgress", "dialog_action": "ElicitSlot"}
    await customer.say("Checking")
    await customer.wait_text("bot", "Checking account balance is")
    await customer.say("I want to talk to an agent")
    await customer.wait_text("bot", "connect you with an agent")
    for event in ("handoff_requested", "agent_queued", "agent_joined"):
        await customer.wait_event(event)
    await customer.wait_text("agent", "How can I help")
    return talkdesk_id(system, customer)


def talkdesk_id(system: System, customer: Customer) -> str:
    assert customer.welcome is not None
    with system.admin() as admin:
        body = admin.get(f"/api/conversations/{customer.welcome['conversation_id']}").json()
    assert body["talkdesk_conversation_id"], body
    return str(body["talkdesk_conversation_id"])


def talkdesk_record(system: System, conversation_id: str) -> dict[str, Any]:
    with system.talkdesk() as talkdesk:
        response = talkdesk.get(f"/_emulator/conversations/{conversation_id}")
    response.raise_for_status()
    return dict(response.json())


def transcript(system: System, customer: Customer) -> dict[str, Any]:
    assert customer.welcome is not None
    with system.admin() as admin:
        return dict(admin.get(f"/api/conversations/{customer.welcome['conversation_id']}").json())


async def eventually(check: Any, timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy (what it returned) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


def assert_gapless(customer: Customer) -> None:
    seqs = [f["seq"] for f in customer.shown]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
