"""Resume tokens expire (issue 7): a token opened its conversation's whole transcript for ever, closed
or not. Now it works for LEXDESK_RESUME_TOKEN_TTL after it was issued, and a closed conversation
resumes only within LEXDESK_CLOSED_RESUME_GRACE of its end. Through the real edge, with short settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from services.edge import tokens
from tests.integration.journeys import transcript
from tests.integration.private import private_database, private_vhost
from tools.harness.customer import Customer
from tools.harness.system import System

TTL = 8.0
GRACE = 3.0


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with private_database("expiry") as database, private_vhost("expiry") as broker, \
            System(tmp_path_factory.mktemp("expiry"), database, broker, edge_nodes=2,
                   worker_queues=("routing,lex,talkdesk,timers",),
                   extra_env={"LEXDESK_RESUME_TOKEN_TTL": str(TTL),
                              "LEXDESK_CLOSED_RESUME_GRACE": str(GRACE)}) as running:
        yield running


def test_a_token_stops_working_after_its_ttl(short_lived: System) -> None:
    async def scenario() -> None:
        customer = Customer()
        first = await customer.hello(short_lived.edge_urls[0])
        issued = time.monotonic()
        await customer.say("what is my balance")
        await customer.wait_text("bot", "checking or savings")
        await customer.disconnect()
        # Within its TTL it resumes, on any node, and the welcome hands out a fresh token.
        resumed = await customer.resume(short_lived.edge_urls[1])
        assert resumed["type"] == "welcome" and resumed["state"] == "bot", resumed
        await customer.disconnect()

        await asyncio.sleep(issued + TTL + 1.5 - time.monotonic())
        customer.welcome = first  # the token the hello gave, kept past its TTL
        expired = await customer.resume(short_lived.edge_urls[0], last_seq=0)
        assert (expired["type"], expired.get("code")) == ("error", "invalid_token"), expired
        assert customer.shown[-1]["text"].startswith("Which account")  # nothing more was sent
        # The conversation itself is still open: the token alone has run out.
        customer.welcome = resumed
        assert transcript(short_lived, customer)["state"] == "bot"
        await customer.disconnect()

    asyncio.run(scenario())


def test_a_closed_conversation_resumes_within_the_grace_period_then_never(short_lived: System) -> None:
    secret = short_lived.env["LEXDESK_RESUME_TOKEN_SECRET"].encode()

    async def scenario() -> None:
        customer = Customer()
        await customer.hello(short_lived.edge_urls[0])
        await customer.say("what is my balance")
        await customer.wait_text("bot", "checking or savings")
        await customer.send({"type": "end"})
        await customer.wait_event("conversation_ended")
        ended = time.monotonic()
        await asyncio.wait_for(customer.closed.wait(), 10)

        # A reload right after the end still shows the conversation, ended.
        reload = Customer()
        reload.welcome = customer.welcome
        again = await reload.resume(short_lived.edge_urls[1], last_seq=0)
        assert again["type"] == "welcome" and again["state"] == "closed", again
        await reload.wait_event("conversation_ended")
        await reload.disconnect()

        await asyncio.sleep(ended + GRACE + 1.5 - time.monotonic())
        # The token is well within its own TTL: it is the conversation's end that closed it.
        assert again["resume_token"] and tokens.verify(secret, again["resume_token"]) == again["conversation_id"]
        later = Customer()
        later.welcome = again
        refused = await later.resume(short_lived.edge_urls[0], last_seq=0)
        assert (refused["type"], refused.get("code")) == ("error", "invalid_token"), refused
        assert later.shown == []  # not one frame of the transcript
        await later.disconnect()

    asyncio.run(scenario())
