"""Attacks on the customer edge's limits (issue 7, findings 5 and 7), on real processes: many sockets must
not multiply what one socket may do. Limits hold per conversation and per client address as well as per
socket; sockets are refused at the upgrade (429) beyond the per-address counts; a socket that never says
hello is closed; `end` on an ended conversation costs no database write; resumes do not grow `connections`.

The system here has its own database and vhost and tight limits. Each test connects from addresses of its
own (127.0.0.N: all of 127.0.0.0/8 is loopback), so one test's counts cannot leak into another's, and a
customer on another address checks that the limits slow nobody else."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from shared.models import Connection
from tests.integration.journeys import eventually
from tools.harness.backends import backend
from tools.harness.customer import Customer, Frame
from tools.harness.system import System

HELLO_TIMEOUT = 3.0
LIMITS = {
    "LEXDESK_RATE_LIMIT_MESSAGES": "20",  # per socket (the default), in LEXDESK_RATE_LIMIT_WINDOW = 10 s
    "LEXDESK_RATE_LIMIT_CONVERSATION_MESSAGES": "30",
    "LEXDESK_RATE_LIMIT_ADDRESS_MESSAGES": "50",
    "LEXDESK_ADDRESS_MAX_SOCKETS": "12",
    "LEXDESK_ADDRESS_MAX_UNSTARTED_SOCKETS": "5",
    "LEXDESK_ADDRESS_NEW_SOCKETS": "40",
    "LEXDESK_ADDRESS_NEW_SOCKETS_WINDOW": "120",  # longer than any test: counts cannot expire mid-test
    "LEXDESK_ADDRESS_NEW_CONVERSATIONS": "10",
    "LEXDESK_ADDRESS_NEW_CONVERSATIONS_WINDOW": "120",
    "LEXDESK_HELLO_TIMEOUT": str(HELLO_TIMEOUT),
}
_addresses = itertools.count(10)


def fresh_address() -> str:
    """A client address no other test of this module has used."""
    return f"127.0.0.{next(_addresses)}"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """edge-0 takes the socket's peer as the client address; edge-1 trusts X-Forwarded-For (as behind a proxy)."""
    workdir: Path = tmp_path_factory.mktemp("edge-limits")
    with backend("postgres", workdir, label="limits") as infra:
        limited = System(workdir, infra.database_url, infra.broker_url, edge_nodes=2,
                         worker_queues=("routing,lex,talkdesk,timers",), extra_env=LIMITS)
        limited.procs["edge-1"].env["LEXDESK_TRUST_FORWARDED_FOR"] = "true"
        with limited:
            yield limited


async def open_socket(url: str, source: str, headers: dict[str, str] | None = None) -> ClientConnection:
    return await connect(url, local_addr=(source, 0), additional_headers=headers, open_timeout=10,
                         max_size=None, compression=None)


async def refused(url: str, source: str, headers: dict[str, str] | None = None) -> str:
    """The upgrade is refused with 429; the reason it gives."""
    with pytest.raises(InvalidStatus) as refusal:
        ws = await open_socket(url, source, headers)
        await ws.close()
    assert refusal.value.response.status_code == 429, refusal.value.response
    return refusal.value.response.body.decode()


async def answers(customer: Customer, ids: list[str], timeout: float = 30) -> dict[str, Frame]:
    """The first `accepted` or `error` for each message id."""
    for message_id in ids:
        await customer.wait_other(lambda f, i=message_id: f.get("id") == i and f["type"] in ("accepted", "error"),
                                  timeout=timeout)
    return {i: next(f for f in customer.others if f.get("id") == i) for i in ids}


async def burst(customer: Customer, prefix: str, count: int) -> dict[str, Frame]:
    """`count` messages sent at once, without waiting for answers; then the answer to each."""
    ids = [f"{prefix}-{n}" for n in range(count)]
    for message_id in ids:
        await customer.send({"type": "message", "id": message_id, "text": f"flood {message_id}"})
    return await answers(customer, ids)


def split(answered: dict[str, Frame]) -> tuple[list[str], list[str]]:
    """(accepted ids, rate-limited ids); every refusal is the documented `rate_limited` error with its id."""
    taken = [i for i, f in answered.items() if f["type"] == "accepted"]
    limited = [i for i, f in answered.items() if f["type"] != "accepted"]
    for message_id in limited:
        error = answered[message_id]
        assert error["type"] == "error" and error["code"] == "rate_limited" and error["id"] == message_id, error
        assert "later" in error["message"], error
    return taken, limited


def customer_texts(system: System, conversation_id: str) -> list[str]:
    with system.admin() as admin:
        response = admin.get(f"/api/conversations/{conversation_id}")
    response.raise_for_status()
    return [m["text"] for m in response.json()["transcript"] if m["sender"] == "customer" and m["kind"] == "message"]


def conversation_count(system: System) -> int:
    with system.admin() as admin:
        response = admin.get("/api/conversations", params={"limit": 500})
    response.raise_for_status()
    return len(response.json()["conversations"])


async def still_served(system: System, url: str | None = None) -> None:
    """A customer on an address of its own opens a conversation and gets a message accepted."""
    bystander = Customer(source=fresh_address())
    welcome = await bystander.hello(url or system.edge_urls[0])
    assert welcome["type"] == "welcome"
    message_id = await bystander.say("what is my balance")
    assert {"type": "accepted", "id": message_id} in bystander.others, bystander.others
    await bystander.disconnect()


# -- messages: per conversation and per address, not only per socket ------------------------------------


def test_sockets_resuming_one_conversation_share_its_message_limit(system: System) -> None:
    """Ten sockets resuming one token, each sending a socket's worth (20), get the conversation's 30 (plus
    what refills meanwhile), not 200."""
    async def scenario() -> None:
        source = fresh_address()
        owner = Customer(source=source)
        welcome = await owner.hello(system.edge_urls[0])
        await owner.disconnect()
        started = time.monotonic()
        answered: dict[str, Frame] = {}
        for n in range(10):
            sock = Customer(source=source)
            sock.welcome = welcome
            resumed = await sock.resume(system.edge_urls[0], last_seq=0)
            assert resumed["type"] == "welcome", resumed
            answered |= await burst(sock, f"s{n}", 20)
            await sock.disconnect()
        elapsed = time.monotonic() - started
        taken, limited = split(answered)
        # 30 a window, refilled at 3 a second while the flood lasted.
        assert len(taken) <= 30 + 3 * elapsed + 1, (len(taken), elapsed)
        assert len(limited) >= 200 - (30 + 3 * elapsed + 1), (len(limited), elapsed)
        # Exactly the accepted ones are stored.
        await eventually(lambda: len(customer_texts(system, welcome["conversation_id"])) >= len(taken))
        assert sorted(customer_texts(system, welcome["conversation_id"])) == sorted(f"flood {i}" for i in taken)
        await still_served(system)

    asyncio.run(scenario())


def test_conversations_from_one_address_share_its_message_limit(system: System) -> None:
    """Five conversations from one address, each within its own limits (15 messages), are held to the
    address's 50 a window together."""
    async def scenario() -> None:
        source = fresh_address()
        customers = [Customer(source=source) for _ in range(5)]
        for customer in customers:
            await customer.hello(system.edge_urls[0])
        started = time.monotonic()
        results = await asyncio.gather(*(burst(c, f"a{n}", 15) for n, c in enumerate(customers)))
        elapsed = time.monotonic() - started
        answered = {i: f for result in results for i, f in result.items()}
        taken, limited = split(answered)
        assert limited, "75 messages from one address in a burst, none refused"
        assert len(taken) <= 50 + 5 * elapsed + 1, (len(taken), elapsed)
        await still_served(system)
        for customer in customers:
            await customer.disconnect()

    asyncio.run(scenario())


# -- sockets per address: refused at the upgrade ---------------------------------------------------------


def test_new_sockets_per_address_beyond_the_window_are_refused_with_429(system: System) -> None:
    """One address opening socket after socket (each closed at once, so few are open) gets 40 in the
    window, then 429; a forged X-Forwarded-For changes nothing where it is not trusted."""
    async def scenario() -> None:
        source = fresh_address()
        opened, reasons = 0, []
        for n in range(45):
            headers = {"X-Forwarded-For": f"198.51.100.{n}"} if n % 2 else None
            try:
                ws = await open_socket(system.edge_urls[0], source, headers)
            except InvalidStatus as exc:
                assert exc.response.status_code == 429, exc.response
                reasons.append(exc.response.body.decode())
                continue
            opened += 1
            await ws.close()
        assert opened == 40 and len(reasons) == 5, (opened, reasons)
        assert all("new sockets" in r for r in reasons), reasons
        await still_served(system)

    asyncio.run(scenario())


def test_open_sockets_per_address_are_capped_with_429(system: System) -> None:
    """Twelve open sockets per address (ten conversations, two not started yet); the thirteenth is refused
    until one closes."""
    async def scenario() -> None:
        source = fresh_address()
        held = [Customer(source=source) for _ in range(10)]
        for customer in held:
            await customer.hello(system.edge_urls[0])
        idle = [await open_socket(system.edge_urls[0], source) for _ in range(2)]
        assert "open sockets" in await refused(system.edge_urls[0], source)
        await still_served(system)

        await held[0].disconnect()

        async def admitted() -> bool:
            try:
                ws = await open_socket(system.edge_urls[0], source)
            except InvalidStatus as exc:
                assert exc.response.status_code == 429
                return False
            await ws.close()
            return True

        deadline = time.monotonic() + 5
        while not await admitted():  # the slot frees when the edge sees the TCP connection go
            assert time.monotonic() < deadline, "a closed socket's slot was never given back"
            await asyncio.sleep(0.1)
        for ws in idle:
            await ws.close()
        for customer in held[1:]:
            await customer.disconnect()

    asyncio.run(scenario())


# -- sockets that never say hello --------------------------------------------------------------------------


def test_socket_without_hello_is_closed_after_the_hello_timeout(system: System) -> None:
    async def scenario() -> None:
        source = fresh_address()
        silent = Customer(source=source)
        await silent.connect(system.edge_urls[0])
        opened = time.monotonic()
        await silent.send({"type": "ping"})  # a keep-alive is not a hello
        talker = Customer(source=source)
        await talker.hello(system.edge_urls[0])

        await asyncio.wait_for(silent.closed.wait(), HELLO_TIMEOUT + 5)
        waited = time.monotonic() - opened
        assert silent.ws is not None
        assert silent.ws.close_code == 4408 and "hello" in silent.ws.close_reason, (
            silent.ws.close_code, silent.ws.close_reason)
        assert waited >= HELLO_TIMEOUT - 0.5, waited

        # The socket that said hello is open past the timeout, and works.
        await asyncio.sleep(max(0.0, HELLO_TIMEOUT + 0.5 - (time.monotonic() - opened)))
        assert not talker.closed.is_set()
        await talker.say("what is my balance")
        await talker.wait_text("bot", "checking or savings")
        await talker.disconnect()

    asyncio.run(scenario())


def test_sockets_without_hello_are_capped_per_address(system: System) -> None:
    async def scenario() -> None:
        source = fresh_address()
        silent = [Customer(source=source) for _ in range(5)]
        for customer in silent:
            await customer.connect(system.edge_urls[0])
        assert "without hello" in await refused(system.edge_urls[0], source)
        await still_served(system)

        # One of them starts a conversation: it no longer counts as unstarted, and a new socket is let in.
        await silent[0].send({"type": "hello"})
        await silent[0].wait_other(lambda f: f["type"] == "welcome")
        late = await open_socket(system.edge_urls[0], source)
        # The silent ones are closed at the hello timeout, and their places are free again.
        for customer in silent[1:]:
            await asyncio.wait_for(customer.closed.wait(), HELLO_TIMEOUT + 5)
        await eventually(lambda: late.close_code is not None, timeout=HELLO_TIMEOUT + 5)
        assert late.close_code == 4408
        again = [await open_socket(system.edge_urls[0], source) for _ in range(5)]
        for ws in again:
            await ws.close()
        await silent[0].disconnect()

    asyncio.run(scenario())


# -- new conversations per address ----------------------------------------------------------------------


def test_new_conversations_per_address_are_rate_limited(system: System) -> None:
    """Thirteen hellos from one address: ten conversations, three `rate_limited` (the sockets stay open),
    and not one row more."""
    async def scenario() -> None:
        source = fresh_address()
        before = conversation_count(system)
        welcomed, limited = 0, []
        for _ in range(13):
            customer = Customer(source=source)
            await customer.connect(system.edge_urls[0])
            await customer.send({"type": "hello", "customer": {"name": "Flood"}})
            answer = await customer.wait_other(lambda f: f["type"] in ("welcome", "error"))
            if answer["type"] == "welcome":
                welcomed += 1
                await customer.disconnect()
                continue
            assert answer["code"] == "rate_limited" and "later" in answer["message"], answer
            await customer.send({"type": "ping"})
            await customer.wait_other(lambda f: f["type"] == "pong")  # the socket is still open
            limited.append(customer)
        assert welcomed == 10 and len(limited) == 3, (welcomed, len(limited))
        assert conversation_count(system) == before + 10
        await still_served(system)
        for customer in limited:
            await customer.disconnect()

    asyncio.run(scenario())


# -- `end` on an ended conversation ------------------------------------------------------------------------


def test_end_spam_on_closed_conversations_is_answered_without_slowing_others(system: System) -> None:
    """Eight sockets on ended conversations send 100 `end`s each: every one is answered
    `conversation_closed` at once (no write transaction each), and another customer's messages are
    accepted as fast as ever meanwhile."""
    async def scenario() -> None:
        spammers: list[Customer] = []
        sources = [fresh_address(), fresh_address()]
        for n in range(8):
            source = sources[n % 2]
            owner = Customer(source=source)
            await owner.hello(system.edge_urls[0])
            await owner.send({"type": "end"})
            await owner.wait_event("conversation_ended")
            await asyncio.wait_for(owner.closed.wait(), 10)
            spammer = Customer(source=source)
            spammer.welcome = owner.welcome
            resumed = await spammer.resume(system.edge_urls[0], last_seq=owner.last_seq)
            assert resumed["type"] == "welcome" and resumed["state"] == "closed", resumed
            spammers.append(spammer)

        bystander = Customer(source=fresh_address())
        await bystander.hello(system.edge_urls[0])
        latencies: list[float] = []

        async def talk() -> None:
            for n in range(10):
                sent = time.monotonic()
                await bystander.say(f"what is my balance {n}")
                latencies.append(time.monotonic() - sent)

        async def spam(customer: Customer) -> None:
            for _ in range(100):
                await customer.send({"type": "end"})

        started = time.monotonic()
        await asyncio.gather(talk(), *(spam(c) for c in spammers))

        def closed_answers(customer: Customer) -> int:
            return sum(1 for f in customer.others if f["type"] == "error" and f["code"] == "conversation_closed")

        for spammer in spammers:
            await eventually(lambda s=spammer: closed_answers(s) >= 100, timeout=15)
            assert closed_answers(spammer) == 100
            assert not [f for f in spammer.others if f["type"] == "error" and "id" in f], spammer.others[:3]
        assert time.monotonic() - started < 15
        assert all(f["type"] in ("accepted", "status") for f in bystander.others if f.get("id")), bystander.others
        assert statistics.median(latencies) < 0.5, latencies
        for customer in [bystander, *spammers]:
            await customer.disconnect()

    asyncio.run(scenario())


# -- resumes and the connections table ----------------------------------------------------------------------


def test_resumes_keep_one_connection_row_and_the_newest_socket_gets_the_frames(system: System) -> None:
    async def scenario() -> None:
        source = fresh_address()
        owner = Customer(source=source)
        welcome = await owner.hello(system.edge_urls[0])
        await owner.disconnect()
        for n in range(30):  # on both nodes, as a customer moving between them would
            sock = Customer(source=source)
            sock.welcome = welcome
            assert (await sock.resume(system.edge_urls[n % 2], last_seq=0))["type"] == "welcome"
            await sock.disconnect()
        newest = Customer(source=source)
        newest.welcome = welcome
        assert (await newest.resume(system.edge_urls[1], last_seq=0))["type"] == "welcome"

        engine = create_engine(system.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(func.count()).select_from(Connection)
                                    .where(Connection.conversation_id == welcome["conversation_id"])).scalar_one()
                live = conn.execute(select(func.count()).select_from(Connection)
                                    .where(Connection.conversation_id == welcome["conversation_id"],
                                           Connection.disconnected_at.is_(None))).scalar_one()
        finally:
            engine.dispose()
        assert rows <= 2 and live == 1, (rows, live)

        await newest.say("what is my balance")
        await newest.wait_text("bot", "checking or savings")
        await newest.disconnect()

    asyncio.run(scenario())


# -- the client address behind a proxy -----------------------------------------------------------------


def test_forwarded_for_names_the_client_only_where_trusted(system: System) -> None:
    """edge-1 trusts X-Forwarded-For: its last entry (what the proxy saw) is the client, whatever the client
    put before it; without the header the peer is the client."""
    async def scenario() -> None:
        proxy = fresh_address()  # one proxy address for every client behind it
        url = system.edge_urls[1]
        for _ in range(40):
            ws = await open_socket(url, proxy, {"X-Forwarded-For": "203.0.113.7"})
            await ws.close()
        assert "new sockets" in await refused(url, proxy, {"X-Forwarded-For": "203.0.113.7"})
        # What the client wrote itself before the proxy's entry does not make it someone else.
        assert "new sockets" in await refused(url, proxy, {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
        for other in ({"X-Forwarded-For": "203.0.113.8"}, None):  # another client behind it; the proxy itself
            ws = await open_socket(url, proxy, other)
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
            await ws.close()
        await still_served(system, url)

    asyncio.run(scenario())
