"""Customer and agent in two pages, in Chromium, through the whole journey on PostgreSQL + RabbitMQ: the
customer's chat page and the Talkdesk emulator's agent console (a person, no scripted agent). The
agent takes the chat, types and replies; the customer types (shown in the console); the customer
reloads mid-conversation; a Talkdesk outage shows `delayed`, then `delivered`, on the customer's
bubble; the agent closes; the customer rates."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium, conversation_of, open_chat, say, wait_for_last_fate, wait_for_text
from tools.harness.backends import backend
from tools.harness.system import System

NAME_KEY = "talkdesk-emulator.agent-name"  # the console keeps the person's name here
CUSTOMER_TYPING = "Customer is typing…"


@pytest.fixture(scope="module")
def person_answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("two-pages")
    with backend("postgres", workdir, label="pages") as shape, System(
            workdir, shape.database_url, shape.broker_url, scripted_agent=False,
            extra_env={"LEXDESK_DELAYED_AFTER": "3s", "LEXDESK_RETRY_BACKOFF_MAX": "3"}) as system:
        yield system


def test_customer_and_agent_in_two_pages(person_answers: System, tmp_path: Path) -> None:
    system = person_answers
    with chromium() as browser:
        customer = browser.new_page(viewport={"width": 900, "height": 900})
        open_chat(customer, f"{system.http_url}/")
        say(customer, "I want to talk to an agent")
        wait_for_text(customer, "#log .event", "Waiting for an agent")
        conversation_id = conversation_of(customer)
        with system.admin() as admin:
            talkdesk_id = admin.get(f"/api/conversations/{conversation_id}").json()["talkdesk_conversation_id"]
        assert talkdesk_id
        # Nobody has taken it: no "agent joined" for the customer.
        assert customer.locator("#log .event", has_text="An agent joined").count() == 0

        agent = browser.new_page(viewport={"width": 1366, "height": 820})
        agent.add_init_script(f"localStorage.setItem({NAME_KEY!r}, 'Sam Rivera')")
        agent.goto(f"{system.talkdesk_url}/console")
        agent.click(f".conv[data-id='{talkdesk_id}']", timeout=20_000)
        wait_for_text(agent, "#previous", "I want to talk to an agent")
        agent.click("#take-button")
        wait_for_text(customer, "#log .event", "An agent joined: Sam Rivera")
        agent.fill("#agent-input", "Hi, I'm Sam")
        customer.wait_for_function("() => document.getElementById('typing').textContent === 'Sam Rivera is typing…'",
                                   timeout=20_000)
        agent.press("#agent-input", "Enter")
        wait_for_text(customer, "#log .agent", "Hi, I'm Sam")
        assert customer.locator("#typing").inner_text() == ""

        # The customer's typing is shown in the console (forwarded while an agent has the chat); their
        # message ends it.
        customer.type("#text", "my card was", delay=40)
        agent.wait_for_function(f"() => document.getElementById('customer-typing').textContent === {CUSTOMER_TYPING!r}",
                                timeout=20_000)
        agent.screenshot(path=str(tmp_path / "agent-customer-typing.png"))
        say(customer, "my card was charged twice")
        wait_for_text(agent, "#chat", "my card was charged twice")
        agent.wait_for_function("() => document.getElementById('customer-typing').textContent === ''", timeout=20_000)
        customer.reload()  # mid-conversation
        customer.wait_for_selector("#text:not([disabled])", timeout=20_000)
        assert customer.locator("#log .agent", has_text="Hi, I'm Sam").count() == 1  # shown once, not lost

        with system.talkdesk() as talkdesk:
            talkdesk.put("/_emulator/faults", json={"error_rate": 1.0}).raise_for_status()
        try:
            say(customer, "hello? are you there?")
            wait_for_last_fate(customer, "delayed")
            customer.screenshot(path=str(tmp_path / "customer-delayed.png"))
        finally:
            with system.talkdesk() as talkdesk:
                talkdesk.put("/_emulator/faults", json={"error_rate": 0.0}).raise_for_status()
        wait_for_last_fate(customer, "delivered")
        wait_for_text(agent, "#chat", "hello? are you there?")
        agent.fill("#agent-input", "Yes, sorry: I am refunding the second charge now.")
        agent.press("#agent-input", "Enter")
        wait_for_text(customer, "#log .agent", "refunding the second charge")
        agent.screenshot(path=str(tmp_path / "agent-console.png"))

        agent.click("#end-button")
        customer.wait_for_selector("#rating", timeout=20_000)
        customer.check("#rating input[value='4']")
        customer.click("#rating button[type=submit]")
        wait_for_text(customer, "#after", "Thank you for your rating.")
        customer.screenshot(path=str(tmp_path / "customer-rated.png"))
    with system.admin() as admin:
        state = admin.get(f"/api/conversations/{conversation_id}").json()
    assert (state["state"], state["closed_by"], state["rating"]["score"]) == ("closed", "agent", 4)
    if os.environ.get("SCREENSHOTS_DIR"):  # `SCREENSHOTS_DIR=docs/screenshots pytest ...` refreshes the README's
        target = Path(os.environ["SCREENSHOTS_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "agent-console.png", target / "agent-console.png")
