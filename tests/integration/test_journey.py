"""The bridge end to end on real processes: PostgreSQL, RabbitMQ, two edge nodes, a worker process per
queue, and the Talkdesk and Lex emulators over HTTP."""

from __future__ import annotations

import asyncio

import httpx

from tests.integration.journeys import (
    assert_gapless,
    eventually,
    reach_agent,
    talkdesk_record,
    transcript,
)
from tools.harness.customer import Customer
from tools.harness.system import System


def test_banking_journey_handoff_and_agent_closes(system: System) -> None:
    async def journey() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        await customer.say("hello agent, my card was charged twice")
        await customer.wait_text("agent", "You said: hello agent, my card was charged twice")
        await customer.say("close")
        ended = await customer.wait_event("conversation_ended")
        assert ended["by"] == "agent"
        await asyncio.wait_for(customer.closed.wait(), 10)  # the edge closes the socket after telling
        assert_gapless(customer)
        assert customer.duplicates == 0

        # What the agent was handed: the bot transcript in order, the intents and the sentiment.
        record = talkdesk_record(system, td_id)
        previous = [(m["type"], m["content"]) for m in record["previous_messages"]]
        assert previous[:4] == [
            ("USER", "what is my balance"),
            ("EXTERNAL", "Which account would you like the balance for, checking or savings?"),
            ("USER", "Checking"),
            ("EXTERNAL", "Your Checking account balance is $1,234.56."),
        ]
        assert ("USER", "I want to talk to an agent") in previous
        context = record["context_parameters"]
        assert "CheckBalance > TalkToAgent" in context["contact_reason"]
        assert "Sentiment:" in context["contact_reason"]
        assert context["contact_name"] == "Ana Silva" and context["website_location"] == "/pricing"
        assert record["request"]["contact_person"]["email"] == "ana@example.com"
        received = [m["content"] for m in record["customer_messages"]]
        assert received == ["hello agent, my card was charged twice", "close"]

        state = transcript(system, customer)
        assert state["state"] == "closed" and state["closed_by"] == "agent"
        bot_turns = [m for m in state["transcript"] if m["sender"] == "customer" and m["intent"]]
        assert [(m["intent"], m["intent_state"]) for m in bot_turns] == [
            ("CheckBalance", "InProgress"), ("CheckBalance", "Fulfilled"), ("TalkToAgent", "Fulfilled")]
        assert all(m["sentiment"] for m in bot_turns)

    asyncio.run(journey())


def test_customer_ends_the_conversation(system: System) -> None:
    async def journey() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[1])
        await customer.say("thanks, that is all")
        await customer.send({"type": "end"})
        ended = await customer.wait_event("conversation_ended")
        assert ended["by"] == "customer"
        await asyncio.wait_for(customer.closed.wait(), 10)
        # The agent saw the last message before the conversation ended on the Talkdesk side.
        record = await eventually(lambda: (r := talkdesk_record(system, td_id))["status"] == "ended" and r)
        assert [m["content"] for m in record["customer_messages"]] == ["thanks, that is all"]
        assert transcript(system, customer)["closed_by"] == "customer"

    asyncio.run(journey())


def test_resume_on_another_node_gets_missed_frames_in_order(system: System) -> None:
    async def journey() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        seen_before = customer.last_seq
        await customer.disconnect()
        with system.talkdesk() as talkdesk:
            for n in range(1, 6):
                talkdesk.post(f"/_emulator/conversations/{td_id}/agent-messages",
                              json={"content": f"while you were away {n}"}).raise_for_status()
        # Wait until lexdesk has stored all five (they cannot be delivered: nobody is connected).
        await eventually(lambda: sum("while you were away" in m["text"]
                                     for m in transcript(system, customer)["transcript"]) == 5)
        welcome = await customer.resume(system.edge_urls[1])
        assert welcome["type"] == "welcome" and welcome["state"] == "agent_active"
        assert welcome["last_seq"] == seen_before + 5
        await customer.wait_text("agent", "while you were away 5")
        missed = [f["text"] for f in customer.shown[seen_before:]]
        assert missed == [f"while you were away {n}" for n in range(1, 6)]
        assert_gapless(customer)
        # A reloaded page that kept nothing resumes from 0 and is shown the whole conversation again.
        everything = Customer()
        everything.welcome = customer.welcome
        await everything.resume(system.edge_urls[0], last_seq=0)
        await everything.wait_text("agent", "while you were away 5")
        assert [f["seq"] for f in everything.shown] == [f["seq"] for f in customer.shown]
        # The older socket stays open: both show the conversation (docs/protocol.md §2, "Several tabs").
        assert not customer.closed.is_set()
        # And it goes on from either. (A person typed in the console, so the scripted agent has stepped
        # back: check what reached Talkdesk instead of waiting for an echo.)
        await everything.say("I am back")
        await eventually(lambda: "I am back" in [m["content"] for m in
                                                 talkdesk_record(system, td_id)["customer_messages"]])
        with system.talkdesk() as talkdesk:
            talkdesk.post(f"/_emulator/conversations/{td_id}/agent-messages",
                          json={"content": "welcome back"}).raise_for_status()
        for tab in (customer, everything):
            await tab.wait_text("agent", "welcome back")
            assert_gapless(tab)
            await tab.disconnect()

    asyncio.run(journey())


def test_duplicate_customer_and_agent_message_ids_have_one_effect(system: System) -> None:
    async def journey() -> None:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        # The customer's client resends the same message id (weak network): accepted twice, sent once.
        await customer.say("only once please", message_id="dup-customer-1")
        await customer.say("only once please", message_id="dup-customer-1")
        await customer.wait_text("agent", "You said: only once please")
        # Talkdesk retries an agent message with the same id: 202 both times, shown once.
        with system.callback() as callback:
            for _ in range(2):
                response = callback.post(f"/talkdesk/conversations/{td_id}/messages",
                                         json={"id": "td-msg-dup-1", "content": "agent says this once",
                                               "author_name": "Alex"})
                assert response.status_code == 202 and response.json() == {"status": "accepted"}
        await customer.wait_text("agent", "agent says this once")
        await customer.say("marker")  # everything before the marker's echo has been delivered
        await customer.wait_text("agent", "You said: marker")
        assert customer.texts("agent").count("agent says this once") == 1
        assert customer.texts("agent").count("You said: only once please") == 1
        record = talkdesk_record(system, td_id)
        assert [m["content"] for m in record["customer_messages"]].count("only once please") == 1
        assert_gapless(customer)
        await customer.disconnect()

    asyncio.run(journey())


def test_embedded_default_journey(tmp_path: object) -> None:
    """The same journey on the one-machine default: SQLite and kombu's SQLAlchemy transport."""
    from pathlib import Path

    workdir = Path(str(tmp_path))
    database = f"sqlite:///{workdir / 'lexdesk.sqlite'}"
    broker = f"sqla+sqlite:///{workdir / 'broker.sqlite'}"
    with System(workdir, database, broker, worker_queues=("routing,lex,talkdesk,timers",)) as embedded:
        async def journey() -> None:
            customer = Customer()
            await reach_agent(embedded, customer, embedded.edge_urls[0])
            await customer.say("hello from sqlite")
            await customer.wait_text("agent", "You said: hello from sqlite")
            await customer.say("close")
            await customer.wait_event("conversation_ended")
            assert_gapless(customer)

        try:
            asyncio.run(journey())
        except BaseException:
            print(embedded.logs())
            raise
        assert httpx.get(f"{embedded.http_url}/healthz").json() == {"status": "ok"}
