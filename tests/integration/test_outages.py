"""Vendor outages through the real processes on PostgreSQL + RabbitMQ: minutes of Talkdesk or Lex
trouble lose nothing, and the customer sees each message's fate (`status` frames) and why it waits.

Retries here go on for 5 minutes (LEXDESK_RETRY_FOR) with backoff capped at 5 s, and a message is
`delayed` after 5 s, so the 90 s outage is well inside the retry window and recovery is quick."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import chromium, conversation_of, open_chat, say, wait_for_last_fate
from tests.integration.journeys import eventually, reach_agent, talkdesk_id, talkdesk_record
from tools.harness.backends import backend
from tools.harness.customer import Customer
from tools.harness.system import System

OUTAGE_SECONDS = 90
MESSAGES_DURING_OUTAGE = 10
NO_FAULTS = {"error_rate": 0.0, "rate_limit_rate": 0.0, "stall_rate": 0.0}
TALKDESK_NOTE = "We are having trouble reaching the agent right now."
LEX_NOTE = "The assistant is not answering right now."


@pytest.fixture(scope="module")
def outage_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("outages")
    with backend("postgres", workdir, label="outages") as shape, System(
            workdir, shape.database_url, shape.broker_url,
            extra_env={"LEXDESK_RETRY_FOR": "5m", "LEXDESK_DELAYED_AFTER": "5s",
                       "LEXDESK_RETRY_BACKOFF_MAX": "5"}) as system:
        yield system


def talkdesk_faults(system: System, **knobs: float) -> None:
    with system.talkdesk() as talkdesk:
        talkdesk.put("/_emulator/faults", json={**NO_FAULTS, **knobs}).raise_for_status()


def lex_faults(system: System, **knobs: float) -> None:
    httpx.put(f"{system.lex_url}/_emulator/faults", json={"error_rate": 0.0, **knobs}, timeout=10).raise_for_status()


def readiness(system: System) -> dict[str, Any]:
    with system.admin() as admin:
        return dict(admin.get("/readyz").json())


def delayed_gauge(system: System, destination: str) -> float:
    with system.admin() as admin:
        for line in admin.get("/metrics").text.splitlines():
            if line.startswith(f'lexdesk_messages_delayed{{destination="{destination}"}}'):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError("lexdesk_messages_delayed is not in /metrics")


def dead_letters(system: System, conversation_id: str) -> int:
    with system.admin() as admin:
        return int(admin.get("/api/dead-letters", params={"conversation_id": conversation_id}).json()["total"])


def test_a_90_second_talkdesk_outage_mid_chat_loses_nothing_and_the_customer_sees_why(
        outage_system: System, tmp_path: Path) -> None:
    system = outage_system

    async def journey() -> dict[str, Any]:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        conversation_id = customer.welcome["conversation_id"] if customer.welcome else ""
        first = await customer.say("before the outage")
        await customer.wait_text("agent", "You said: before the outage")
        await customer.wait_status(first, "delivered")

        talkdesk_faults(system, error_rate=1.0)
        started = time.monotonic()
        try:
            ids = []
            for n in range(MESSAGES_DURING_OUTAGE):  # one every 6 s, the last a minute in
                ids.append(await customer.say(f"during the outage {n}"))
                await asyncio.sleep(6)
            for message_id in ids:
                await customer.wait_status(message_id, "delayed", timeout=OUTAGE_SECONDS)
            await customer.wait_text("system", TALKDESK_NOTE)
            ready = readiness(system)
            assert ready["status"] == "degraded" and ready["checks"]["talkdesk"].startswith("delayed: "), ready
            assert "503" in ready["checks"]["talkdesk"] or "500" in ready["checks"]["talkdesk"], ready
            assert ready["checks"]["lex"] == "ok", ready
            gauge_during = delayed_gauge(system, "talkdesk")
            assert gauge_during >= 1
            assert dead_letters(system, conversation_id) == 0
            await asyncio.sleep(max(0.0, started + OUTAGE_SECONDS - time.monotonic()))
        finally:
            talkdesk_faults(system)
        recovered = time.monotonic()
        for message_id in ids:
            await customer.wait_status(message_id, "delivered", timeout=60)
        delivered_after = time.monotonic() - recovered
        for n in range(MESSAGES_DURING_OUTAGE):
            await customer.wait_text("agent", f"You said: during the outage {n}", timeout=30)

        # Once each, in order, at both ends; no dead letter; every bubble went delayed, then delivered.
        echoes = [t for t in customer.texts("agent") if t.startswith("You said: during")]
        assert echoes == [f"You said: during the outage {n}" for n in range(MESSAGES_DURING_OUTAGE)]
        received = [m["content"] for m in talkdesk_record(system, td_id)["customer_messages"]]
        assert received == ["before the outage", *[f"during the outage {n}" for n in range(MESSAGES_DURING_OUTAGE)]]
        assert all(customer.statuses(message_id) == ["delayed", "delivered"] for message_id in ids), \
            {message_id: customer.statuses(message_id) for message_id in ids}
        assert dead_letters(system, conversation_id) == 0
        assert customer.texts("system").count(next(t for t in customer.texts("system") if TALKDESK_NOTE in t)) == 1
        await eventually(lambda: readiness(system)["status"] == "ready", timeout=30)
        assert delayed_gauge(system, "talkdesk") == 0
        await customer.disconnect()
        return {
            "outage_seconds": OUTAGE_SECONDS,
            "accepted": len(ids),
            "delivered_to_talkdesk": len(received) - 1,
            "agent_echoes_seen": len(echoes),
            "dead_lettered": 0,
            "status_frames": {message_id: customer.statuses(message_id) for message_id in ids},
            "all_delivered_within_seconds_of_recovery": round(delivered_after, 1),
            "delayed_gauge_during": gauge_during,
        }

    figures = asyncio.run(journey())
    # The closing note quotes these: `pytest tests/integration/test_outages.py -k 90_second -s`.
    print("\n90 s Talkdesk outage:", json.dumps(figures, indent=1))
    (tmp_path / "outage-figures.json").write_text(json.dumps(figures, indent=1))


def test_a_conversation_talkdesk_forgot_is_handed_to_a_new_agent_with_the_whole_transcript(
        outage_system: System) -> None:
    system = outage_system

    async def journey() -> None:
        customer = Customer()
        lost_id = await reach_agent(system, customer, system.edge_urls[0])
        await customer.say("my card was charged twice")
        await customer.wait_text("agent", "You said: my card was charged twice")
        with system.talkdesk() as talkdesk:
            talkdesk.post(f"/_emulator/conversations/{lost_id}/forget").raise_for_status()

        stranded = await customer.say("hello? are you still there?")
        failed = await customer.wait_status(stranded, "failed")
        assert "Ask for an agent again" in failed["detail"]
        await customer.wait_event("handoff_failed")
        await customer.wait_text("system", "disconnected on their side")
        assert dead_letters(system, customer.welcome["conversation_id"] if customer.welcome else "") == 0

        mark = customer.last_seq
        await customer.say("I want to talk to an agent")
        for event in ("handoff_requested", "agent_queued", "agent_joined"):
            await customer.wait_shown(lambda f, e=event: f["seq"] > mark and f["type"] == "event" and f["event"] == e)
        await customer.wait_shown(lambda f: f["seq"] > mark and f["type"] == "message" and f["from"] == "agent")
        new_id = talkdesk_id(system, customer)
        assert new_id != lost_id
        handed_over = [m["content"] for m in talkdesk_record(system, new_id)["previous_messages"]]
        # The bot phase, the first agent's chat and the message that never got through, in order.
        expected = ["what is my balance", "my card was charged twice", "Agent: You said: my card was charged twice",
                    "hello? are you still there?"]
        positions = [handed_over.index(text) for text in expected]
        assert positions == sorted(positions), handed_over
        assert handed_over.count("I want to talk to an agent") == 2, handed_over  # the first ask, and this one
        assert handed_over[-2:] == ["I want to talk to an agent", "Sure, let me connect you with an agent."], \
            handed_over
        await customer.say("thanks")
        await customer.wait_text("agent", "You said: thanks")
        assert [m["content"] for m in talkdesk_record(system, new_id)["customer_messages"]] == ["thanks"]
        await customer.disconnect()

    asyncio.run(journey())


def test_a_lex_outage_in_the_bot_phase_is_answered_in_order_once_lex_is_back(outage_system: System) -> None:
    system = outage_system

    async def journey() -> None:
        customer = Customer()
        await customer.hello(system.edge_urls[0], customer={"name": "Ana"})
        lex_faults(system, error_rate=1.0)
        try:
            asked = await customer.say("what is my balance")
            then = await customer.say("Checking")
            await customer.wait_status(asked, "delayed", timeout=30)
            await customer.wait_text("system", LEX_NOTE)
            assert readiness(system)["checks"]["lex"].startswith("delayed: ")
            assert customer.texts("bot") == []
        finally:
            lex_faults(system)
        await customer.wait_status(asked, "delivered", timeout=30)
        await customer.wait_text("bot", "checking or savings", timeout=30)
        await customer.wait_text("bot", "Checking account balance is", timeout=30)
        await customer.wait_status(then, "delivered")
        bot = customer.texts("bot")
        assert bot.index(next(t for t in bot if "checking or savings" in t.lower())) < \
            bot.index(next(t for t in bot if "Checking account balance is" in t))
        assert customer.texts("system").count(next(t for t in customer.texts("system") if LEX_NOTE in t)) == 1
        await customer.disconnect()

    asyncio.run(journey())


def test_the_chat_page_shows_each_bubble_sending_delayed_delivered_and_failed_with_try_again(
        outage_system: System, tmp_path: Path) -> None:
    """In Chromium, the page the callback app serves: a Talkdesk outage turns the bubble `delayed`, then
    `delivered`; a message to a Talkdesk conversation that is gone is `failed` with a "Try again" that
    sends it again (to the bot now, which answers it)."""
    system = outage_system
    with chromium() as browser:
        page = browser.new_page()
        open_chat(page, f"{system.http_url}/")

        say(page, "I want to talk to an agent")
        page.wait_for_function("() => [...document.querySelectorAll('#log .agent')].length > 0", timeout=30_000)
        wait_for_last_fate(page, "delivered", 10)

        talkdesk_faults(system, error_rate=1.0)
        try:
            say(page, "are you there?")
            wait_for_last_fate(page, "sent", 10)
            wait_for_last_fate(page, "delayed", 30)
            page.screenshot(path=str(tmp_path / "bubble-delayed.png"))
        finally:
            talkdesk_faults(system)
        wait_for_last_fate(page, "delivered", 30)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#log .agent')].some(e => e.textContent.includes('are you there?'))",
            timeout=30_000)
        page.screenshot(path=str(tmp_path / "bubble-delivered.png"))

        conversation_id = conversation_of(page)
        with system.admin() as admin:
            lost = admin.get(f"/api/conversations/{conversation_id}").json()["talkdesk_conversation_id"]
        with system.talkdesk() as talkdesk:
            talkdesk.post(f"/_emulator/conversations/{lost}/forget").raise_for_status()
        say(page, "what is my balance")
        wait_for_last_fate(page, "failed", 30)
        failed = page.locator("#log .fate").last
        assert "disconnected" in failed.inner_text() and failed.locator("button").inner_text() == "Try again"
        page.screenshot(path=str(tmp_path / "bubble-failed.png"))
        failed.locator("button").click()
        # Back with the bot now: the same words, sent again as a new message, get the bot's answer.
        wait_for_last_fate(page, "delivered", 30)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#log .bot')].some(e => e.textContent.includes('or savings'))",
            timeout=30_000)
        assert page.locator("#log .fate button").count() == 0
        page.screenshot(path=str(tmp_path / "bubble-try-again.png"))
