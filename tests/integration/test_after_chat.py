"""What customers and agents ask of a chat product, through the real processes on PostgreSQL +
RabbitMQ: the agent's typing reaches the customer; when the agent ends the chat the bot asks for a
rating, which is stored and shown to operators; the customer gets a signed, expiring link to the
transcript, redacted as stored. And the attacks on the new entry points: typing for a conversation
that is not one, a transcript link for someone else's conversation, tampered or expired."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlparse

import httpx

from shared import transcript_links
from tests.integration.journeys import reach_agent, transcript
from tools.harness.customer import Customer
from tools.harness.system import System

CARD = "4111 1111 1111 1111"


def test_agent_typing_the_rating_and_the_transcript_link(system: System) -> None:
    async def journey() -> tuple[Customer, str]:
        customer = Customer()
        td_id = await reach_agent(system, customer, system.edge_urls[0])
        with system.callback() as callback:
            assert callback.post(f"/talkdesk/conversations/{td_id}/typing", json={"active": True}).status_code == 202
        typing = await customer.wait_event("agent_typing")
        assert typing["active"] is True and typing["author"] == "Alex"
        await customer.say(f"my card {CARD} was charged twice")
        await customer.wait_text("agent", "You said: my card [card ending 1111] was charged twice")
        await customer.say("close")
        prompt = await customer.wait_text("bot", "How would you rate this chat")
        ended = await customer.wait_event("conversation_ended")
        assert ended["by"] == "agent" and ended["rating_requested"] is True
        assert ended["transcript_url"].startswith(f"/transcript/{customer.welcome['conversation_id']}?")  # type: ignore[index]
        assert prompt["seq"] < ended["seq"]
        await asyncio.wait_for(customer.closed.wait(), 10)

        # The rating comes on a socket resumed for it; `rated` answers, then the socket closes.
        rater = Customer()
        rater.welcome = customer.welcome
        await rater.resume(system.edge_urls[1], last_seq=customer.last_seq)
        await rater.send({"type": "rating", "score": 4, "comment": "quick, thanks"})
        rated = await rater.wait_event("rated")
        assert rated["score"] == 4
        await asyncio.wait_for(rater.closed.wait(), 10)
        return customer, str(ended["transcript_url"])

    customer, link = asyncio.run(journey())
    state = transcript(system, customer)
    assert state["rating"]["score"] == 4 and state["rating"]["comment"] == "quick, thanks"

    download = httpx.get(f"{system.http_url}{link}", timeout=10)
    assert download.status_code == 200, download.text
    assert download.headers["content-disposition"].startswith("attachment;")
    text = download.text
    assert "You: what is my balance" in text and "Alex: You said: my card [card ending 1111] was charged twice" in text
    assert "[card ending 1111]" in text and "4111" not in text.replace("[card ending 1111]", "")
    assert "Your rating: 4/5 (quick, thanks)" in text

    # A second rating changes nothing.
    async def again() -> None:
        rater = Customer()
        rater.welcome = customer.welcome
        await rater.resume(system.edge_urls[0], last_seq=customer.last_seq + 1)
        await rater.send({"type": "rating", "score": 1})
        await asyncio.sleep(1)
        await rater.disconnect()

    asyncio.run(again())
    assert transcript(system, customer)["rating"]["score"] == 4


def test_transcript_links_open_one_conversation_until_they_expire(system: System) -> None:
    async def ended_chat() -> tuple[str, str]:
        customer = Customer()
        await customer.hello(system.edge_urls[0])
        await customer.say("what is my balance")
        await customer.wait_text("bot", "checking or savings")
        await customer.send({"type": "end"})
        ended = await customer.wait_event("conversation_ended")
        assert "rating_requested" not in ended  # only an agent's chat is rated
        return str(customer.welcome["conversation_id"]), str(ended["transcript_url"])  # type: ignore[index]

    first_id, first_link = asyncio.run(ended_chat())
    second_id, _ = asyncio.run(ended_chat())
    query = parse_qs(urlparse(first_link).query)
    expires, sig = query["expires"][0], query["sig"][0]
    assert httpx.get(f"{system.http_url}{first_link}").status_code == 200
    attacks = {
        "someone else's conversation": f"/transcript/{second_id}?expires={expires}&sig={sig}",
        "a later expiry": f"/transcript/{first_id}?expires={int(expires) + 3600}&sig={sig}",
        "no signature": f"/transcript/{first_id}?expires={expires}",
        "an empty signature": f"/transcript/{first_id}?expires={expires}&sig=",
        "not an id": f"/transcript/..%2F..%2Fetc%2Fpasswd?expires={expires}&sig={sig}",
    }
    for what, path in attacks.items():
        answer = httpx.get(f"{system.http_url}{path}")
        assert answer.status_code in (403, 404), (what, answer.status_code, answer.text)
        assert "what is my balance" not in answer.text, what
    secret = system.env["LEXDESK_RESUME_TOKEN_SECRET"]
    expired = transcript_links.issue(secret, first_id, ttl=60, now=time.time() - 120)
    answer = httpx.get(f"{system.http_url}{expired}")
    assert answer.status_code == 403 and "expired" in answer.json()["message"]
    forged = transcript_links.issue("another-secret-of-16+", first_id, ttl=60)
    assert httpx.get(f"{system.http_url}{forged}").status_code == 403


def test_typing_for_a_conversation_that_is_not_one_is_refused(system: System) -> None:
    with system.callback() as callback:
        assert callback.post("/talkdesk/conversations/no-such/typing", json={"active": True}).status_code == 404
        assert callback.post("/talkdesk/conversations/x/typing", json={"active": "maybe"}).status_code == 422
    with httpx.Client(base_url=system.http_url) as anonymous:
        assert anonymous.post("/talkdesk/conversations/x/typing", json={"active": True}).status_code == 401
        assert anonymous.post("/talkdesk/conversations/x/typing", json={"active": True},
                              headers={"X-Api-Key": ""}).status_code == 401
