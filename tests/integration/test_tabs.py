"""Several tabs of one conversation, end to end over PostgreSQL and RabbitMQ with real edge processes
(docs/protocol.md §2, "Several tabs"): each tab shows the whole conversation and can write; the
customer's lines written in one tab reach the others as `echo` frames; a tab opened late is caught up
in order, even while frames keep coming; more tabs than LEXDESK_MAX_SOCKETS_PER_CONVERSATION push out
the oldest; nothing of a conversation reaches a socket of another."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Connection
from tests.integration.journeys import assert_gapless, eventually, reach_agent, talkdesk_record
from tools.harness.customer import Customer
from tools.harness.system import System


def sequence(customer: Customer) -> list[tuple[str, str]]:
    """What a tab shows, in order: the seq'd frames and the echoes, as (kind, text)."""
    shown: list[tuple[str, str]] = []
    for frame in customer.received:
        if frame["type"] == "echo":
            shown.append(("customer", frame["text"]))
        elif frame["type"] == "message" and frame in customer.shown:
            shown.append((frame["from"], frame["text"]))
    return shown


def test_two_tabs_on_two_nodes_both_show_the_conversation_and_both_can_write(system: System) -> None:
    async def tabs() -> None:
        first = Customer()
        await first.hello(system.edge_urls[0], echo=True)
        await first.say("what is my balance")
        await first.wait_text("bot", "checking or savings")

        second = Customer()
        second.welcome = first.welcome
        welcome = await second.resume(system.edge_urls[1], last_seq=0, echo=True)
        assert welcome["type"] == "welcome" and welcome["conversation_id"] == first.welcome["conversation_id"]
        await second.wait_text("bot", "checking or savings")
        # The late tab was caught up with everything, the customer's first line in its place.
        assert [f["seq"] for f in second.shown] == [f["seq"] for f in first.shown]
        shown = sequence(second)
        assert shown[0] == ("customer", "what is my balance") and shown[1][0] == "bot", shown

        # The second tab writes: both tabs see the bot's answer; the first sees the line, the second not twice.
        written = await second.say("Checking")
        for tab in (first, second):
            await tab.wait_text("bot", "Checking account balance is")
        assert first.echoes() == ["Checking"] and "Checking" not in second.echoes()
        assert [f["id"] for f in first.others if f["type"] == "echo"] == [written]
        await second.wait_status(written, "delivered")
        await first.wait_status(written, "delivered")  # what became of it is told in every tab

        # Neither tab was pushed out; both are gapless and show the same frames.
        assert not first.closed.is_set() and not second.closed.is_set()
        for tab in (first, second):
            assert_gapless(tab)
        assert [f["seq"] for f in first.shown] == [f["seq"] for f in second.shown]

        # The end reaches every tab, and each is closed.
        await first.send({"type": "end"})
        for tab in (first, second):
            ended = await tab.wait_event("conversation_ended")
            assert ended["by"] == "customer"
            await asyncio.wait_for(tab.closed.wait(), 10)

    asyncio.run(tabs())


def test_a_tab_opened_while_the_agent_writes_is_caught_up_in_order_without_repeats(system: System) -> None:
    """The new tab's catch-up and the live frames race; the node holds the live ones back until the
    catch-up is done, so the tab shows every seq once, in order."""

    async def race() -> None:
        first = Customer()
        td_id = await reach_agent(system, first, system.edge_urls[0])
        late = Customer()
        late.welcome = first.welcome

        async def agent_writes() -> None:
            with system.talkdesk() as talkdesk:
                for n in range(1, 21):
                    talkdesk.post(f"/_emulator/conversations/{td_id}/agent-messages",
                                  json={"content": f"agent line {n}"}).raise_for_status()
                    await asyncio.sleep(0.02)

        writer = asyncio.create_task(agent_writes())
        await asyncio.sleep(0.1)
        await late.resume(system.edge_urls[1], last_seq=0, echo=True)
        await writer
        for tab in (first, late):
            await tab.wait_text("agent", "agent line 20")
        assert_gapless(late)
        assert [f["seq"] for f in late.shown] == [f["seq"] for f in first.shown]
        assert late.duplicates == 0  # the node dropped the overlap; nothing shown twice
        assert [t for t in late.texts("agent") if t.startswith("agent line")] == [f"agent line {n}" for n in
                                                                                   range(1, 21)]
        # And the late tab writes to the agent like the first.
        await late.say("from the late tab")
        await eventually(lambda: "from the late tab" in [m["content"] for m in
                                                         talkdesk_record(system, td_id)["customer_messages"]])
        # The first tab never asked for echoes (no `echo` in its hello): it gets none. The agent's answer,
        # sent after the line was stored and echoed, comes after any echo would have.
        with system.talkdesk() as talkdesk:
            talkdesk.post(f"/_emulator/conversations/{td_id}/agent-messages",
                          json={"content": "noted"}).raise_for_status()
        await first.wait_text("agent", "noted")
        assert first.echoes() == []
        for tab in (first, late):
            await tab.disconnect()

    asyncio.run(race())


def test_more_tabs_than_allowed_push_out_the_oldest_and_a_stranger_gets_nothing(system: System) -> None:
    """Attack: a flood of sockets resuming one conversation (a leaked token, a script). Each socket
    multiplies the publishes a frame costs, so the conversation keeps at most
    LEXDESK_MAX_SOCKETS_PER_CONVERSATION (5 here) live; the oldest are told (`superseded`, 4409)."""

    async def flood() -> None:
        owner = Customer()
        await owner.hello(system.edge_urls[0], echo=True)
        stranger = Customer()
        await stranger.hello(system.edge_urls[1], echo=True)
        tabs = []
        for n in range(8):
            tab = Customer()
            tab.welcome = owner.welcome
            await tab.resume(system.edge_urls[n % 2], last_seq=0, echo=True)
            tabs.append(tab)
        everyone = [owner, *tabs]
        pushed_out, kept = everyone[:4], everyone[4:]
        for tab in pushed_out:
            await asyncio.wait_for(tab.closed.wait(), 10)
            assert tab.ws is not None and tab.ws.close_code == 4409
            assert any(f.get("code") == "superseded" for f in tab.others)
        assert owner.welcome is not None
        with session_scope(system.database_url) as session:
            live = session.scalar(select(func.count()).select_from(Connection).where(
                Connection.conversation_id == owner.welcome["conversation_id"], Connection.disconnected_at.is_(None)))
        assert live == 5
        await kept[-1].say("what is my balance")
        for tab in kept:
            await tab.wait_text("bot", "checking or savings")
            assert not tab.closed.is_set()
        for tab in kept[:-1]:
            await tab.wait_other(lambda f: f["type"] == "echo" and f["text"] == "what is my balance")
        # The stranger, in a conversation of its own on the same nodes, got none of it.
        await stranger.say("hello")
        await stranger.wait_text("bot", "")
        assert stranger.echoes() == []
        assert "checking or savings" not in " ".join(stranger.texts()).lower()
        for tab in [*kept, stranger]:
            await tab.disconnect()

    asyncio.run(flood())


def test_a_leaked_token_opening_the_chat_elsewhere_is_shown_in_the_customers_tab(system: System) -> None:
    """Attack: someone with the customer's resume token (copied from a shared computer, a proxy log)
    opens the chat. With one socket per conversation the customer was told by losing it; with several
    tabs they are told how many it is open in (`tabs`), when it opens and when it closes."""

    async def intrusion() -> None:
        owner = Customer()
        welcome = await owner.hello(system.edge_urls[0], echo=True)
        assert welcome["tabs"] == 1
        intruder = Customer()
        intruder.welcome = owner.welcome
        opened = await intruder.resume(system.edge_urls[1], last_seq=0)
        assert opened["tabs"] == 2
        await owner.wait_other(lambda f: f["type"] == "tabs" and f["open"] == 2)
        await intruder.disconnect()
        await owner.wait_other(lambda f: f["type"] == "tabs" and f["open"] == 1)
        assert [f["open"] for f in owner.others if f["type"] == "tabs"] == [2, 1]
        assert not [f for f in intruder.others if f["type"] == "tabs"]  # it did not ask (no `echo`)
        await owner.disconnect()

    asyncio.run(intrusion())
