"""Several tabs of one conversation, at the consumers (called directly): every live frame goes to every
socket of the conversation, one publish per edge node; a resumed socket gets its own catch-up, in
transcript order, with the customer's lines as `echo` frames when it asked; a customer's message is
echoed to the other tabs and not to its own; the oldest socket beyond the cap is replaced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.db import session_scope
from shared.edge_bus import CATCH_UP_DONE, CATCH_UP_MORE
from shared.inbound import Outcome, customer_message
from shared.models import Destination, Sender
from shared.store import add_event, add_message, attach_connection, create_conversation
from tests.workers.conftest import EdgeQueue, Env
from workers import routing
from workers.routing import FRAMES_PER_PUBLISH


class Nodes:
    """The queues of two edge nodes, read as the nodes would: the envelopes, whole."""

    def __init__(self, broker_url: str, *node_ids: str) -> None:
        self._queues = {node: EdgeQueue(broker_url, node) for node in node_ids}

    def envelopes(self, node_id: str) -> list[dict[str, Any]]:
        return self._queues[node_id].envelopes()

    def close(self) -> None:
        for queue in self._queues.values():
            queue.close()


@pytest.fixture
def nodes(env: Env) -> Iterator[Nodes]:
    from shared.settings import get_settings

    reader = Nodes(get_settings().broker_url, "node-a", "node-b")
    yield reader
    reader.close()


def conversation_with_history(env: Env) -> str:
    """A bot conversation whose frames were all shown: greeting (1), customer line, answer (2),
    customer line, event (3)."""
    with session_scope(env.database_url) as session:
        conversation_id = create_conversation(session).id
        add_message(session, conversation_id, sender=Sender.BOT, destination=Destination.CUSTOMER, body="Hello!",
                    status="delivered")
        add_message(session, conversation_id, sender=Sender.CUSTOMER, destination=Destination.LEX,
                    body="my card 4111 1111 1111 1111", client_message_id="c-1", status="delivered")
        add_message(session, conversation_id, sender=Sender.BOT, destination=Destination.CUSTOMER,
                    body="Checking or savings?", status="delivered")
        add_message(session, conversation_id, sender=Sender.CUSTOMER, destination=Destination.LEX,
                    body="savings", client_message_id="c-2", status="delivered")
        event = add_event(session, conversation_id, "waiting")
        event.status = "delivered"
    return conversation_id


def attach(env: Env, conversation_id: str, connection_id: str, node_id: str, max_sockets: int = 5) -> list[str]:
    with session_scope(env.database_url) as session:
        attachment = attach_connection(session, conversation_id, connection_id, node_id, max_sockets=max_sockets)
        return [socket.connection_id for socket in attachment.replaced]


def bot_says(env: Env, conversation_id: str, text: str) -> None:
    with session_scope(env.database_url) as session:
        add_message(session, conversation_id, sender=Sender.BOT, destination=Destination.CUSTOMER, body=text)


def test_a_frame_goes_to_every_tab_with_one_publish_per_edge_node(env: Env, nodes: Nodes) -> None:
    conversation_id = conversation_with_history(env)
    for connection_id, node_id in [("tab-1", "node-a"), ("tab-2", "node-a"), ("tab-3", "node-b")]:
        attach(env, conversation_id, connection_id, node_id)
    bot_says(env, conversation_id, "Your balance is $100.")
    routing.deliver(conversation_id=conversation_id)
    [on_a] = nodes.envelopes("node-a")
    [on_b] = nodes.envelopes("node-b")
    assert on_a["connection_ids"] == ["tab-1", "tab-2"] and on_b["connection_ids"] == ["tab-3"]
    assert [f["text"] for f in on_a["frames"]] == [f["text"] for f in on_b["frames"]] == ["Your balance is $100."]
    assert on_a["frames"][0]["seq"] == 4 and "catch_up" not in on_a


def test_a_resumed_tab_gets_its_own_catch_up_in_transcript_order_with_the_customers_lines(
        env: Env, nodes: Nodes) -> None:
    conversation_id = conversation_with_history(env)
    attach(env, conversation_id, "old-tab", "node-a")
    attach(env, conversation_id, "new-tab", "node-b")
    routing.customer_resumed(conversation_id=conversation_id, last_seq=0, connection_id="new-tab", echo=True)
    assert nodes.envelopes("node-a") == []  # the other tab has it all already
    [catch_up] = nodes.envelopes("node-b")
    assert catch_up["connection_ids"] == ["new-tab"] and catch_up["catch_up"] == CATCH_UP_DONE
    shown = [(f["type"], f.get("seq"), f.get("text") or f.get("event") or f.get("status"))
             for f in catch_up["frames"]]
    assert shown == [
        ("message", 1, "Hello!"),
        ("echo", None, "my card [card ending 1111]"),  # as stored: card data masked
        ("message", 2, "Checking or savings?"),
        ("echo", None, "savings"),
        ("event", 3, "waiting"),
        ("status", None, "delivered"), ("status", None, "delivered"),  # then what became of the customer's lines
    ]
    echoes = [f for f in catch_up["frames"] if f["type"] == "echo"]
    assert [(f["id"], f["after_seq"]) for f in echoes] == [("c-1", 1), ("c-2", 2)]
    assert all(f["at"].endswith("Z") for f in echoes)


def test_a_catch_up_from_a_seq_holds_only_what_came_after_it_and_no_echoes_unless_asked(
        env: Env, nodes: Nodes) -> None:
    conversation_id = conversation_with_history(env)
    attach(env, conversation_id, "tab", "node-a")
    routing.customer_resumed(conversation_id=conversation_id, last_seq=1, connection_id="tab", echo=True)
    [catch_up] = nodes.envelopes("node-a")
    # c-1 was written after frame 1: a tab that showed only frame 1 may not have it.
    assert [f.get("seq") or f.get("id") for f in catch_up["frames"] if f["type"] != "status"] == ["c-1", 2, "c-2", 3]
    routing.customer_resumed(conversation_id=conversation_id, last_seq=1, connection_id="tab")
    [plain] = nodes.envelopes("node-a")
    assert [f["seq"] for f in plain["frames"] if f["type"] != "status"] == [2, 3]


def test_a_long_catch_up_comes_in_batches_and_only_the_last_says_done(env: Env, nodes: Nodes) -> None:
    with session_scope(env.database_url) as session:
        conversation_id = create_conversation(session).id
        for n in range(FRAMES_PER_PUBLISH * 2 + 5):
            add_message(session, conversation_id, sender=Sender.BOT, destination=Destination.CUSTOMER,
                        body=f"line {n}", status="delivered")
    attach(env, conversation_id, "tab", "node-a")
    routing.customer_resumed(conversation_id=conversation_id, last_seq=0, connection_id="tab")
    envelopes = nodes.envelopes("node-a")
    assert [e["catch_up"] for e in envelopes] == [CATCH_UP_MORE, CATCH_UP_MORE, CATCH_UP_DONE]
    seqs = [f["seq"] for e in envelopes for f in e["frames"]]
    assert seqs == list(range(1, FRAMES_PER_PUBLISH * 2 + 6))


def test_a_catch_up_for_a_socket_that_is_gone_sends_nothing(env: Env, nodes: Nodes) -> None:
    conversation_id = conversation_with_history(env)
    attach(env, conversation_id, "tab", "node-a")
    routing.customer_resumed(conversation_id=conversation_id, last_seq=0, connection_id="closed-already")
    assert nodes.envelopes("node-a") == []


def test_a_customer_message_is_echoed_to_the_other_tabs_not_its_own(env: Env, nodes: Nodes) -> None:
    from shared.settings import get_settings

    conversation_id = conversation_with_history(env)
    attach(env, conversation_id, "writer", "node-a")
    alone = customer_message(get_settings(), conversation_id, "m-0", "nobody else here", "writer")
    assert alone == Outcome.STORED and nodes.envelopes("node-a") == []  # one tab: no publish at all
    attach(env, conversation_id, "reader-a", "node-a")
    attach(env, conversation_id, "reader-b", "node-b")
    assert customer_message(get_settings(), conversation_id, "m-1", "pay 4111 1111 1111 1111", "writer") == \
        Outcome.STORED
    [on_a] = nodes.envelopes("node-a")
    [on_b] = nodes.envelopes("node-b")
    assert on_a["connection_ids"] == ["reader-a"] and on_b["connection_ids"] == ["reader-b"]
    echo = on_b["frames"][0]
    assert (echo["type"], echo["id"], echo["text"], echo["after_seq"]) == (
        "echo", "m-1", "pay [card ending 1111]", 3)


def test_the_oldest_socket_beyond_the_cap_is_replaced_and_the_rest_stay(env: Env) -> None:
    conversation_id = conversation_with_history(env)
    assert attach(env, conversation_id, "tab-1", "node-a", max_sockets=2) == []
    assert attach(env, conversation_id, "tab-2", "node-b", max_sockets=2) == []
    assert attach(env, conversation_id, "tab-3", "node-a", max_sockets=2) == ["tab-1"]
    assert attach(env, conversation_id, "tab-4", "node-a", max_sockets=1) == ["tab-2", "tab-3"]
    from shared.store import live_sockets

    with session_scope(env.database_url) as session:
        assert [s.connection_id for s in live_sockets(session, conversation_id)] == ["tab-4"]
