"""Vendor outages at the consumers, called directly: retries bounded by time (LEXDESK_RETRY_FOR), not by
a count; the customer told what became of each message (`status` frames on their edge node's queue:
delayed, delivered, failed); a Talkdesk conversation that Talkdesk no longer knows handed back to the
bot, and a new handoff that carries the whole transcript."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Conversation, Message
from shared.store import attach_connection
from tests.workers.conftest import EdgeQueue, Env, customer_says
from tests.workers.test_talkdesk_worker import NO_FAULTS, at_agent, drain_until_settled, emulator_record, faults
from workers import talkdesk
from workers.base import RetryLater

NODE_ID = "outage-node"


@pytest.fixture(autouse=True)
def faults_off(env: Env) -> Iterator[None]:
    yield
    httpx.put(f"{env.talkdesk_url}/_emulator/faults", json=NO_FAULTS).raise_for_status()


def configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Settings for this test only: bounded by time alone unless a test sets a count."""
    from shared.settings import get_settings

    monkeypatch.delenv("LEXDESK_MAX_ATTEMPTS", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(f"LEXDESK_{name}", value)
    get_settings.cache_clear()


class EdgeNode(EdgeQueue):
    """The queue of the edge node that holds the customer's socket."""

    def __init__(self, broker_url: str) -> None:
        super().__init__(broker_url, NODE_ID)

    def statuses(self) -> list[tuple[str, str]]:
        return [(f["id"], f["status"]) for f in self.frames() if f["type"] == "status"]


@pytest.fixture
def node(env: Env) -> Iterator[EdgeNode]:
    from shared.settings import get_settings

    edge = EdgeNode(get_settings().broker_url)
    yield edge
    edge.close()


def with_socket(env: Env, conversation_id: str) -> None:
    with session_scope(env.database_url) as session:
        attach_connection(session, conversation_id, f"socket-{conversation_id}", NODE_ID)


def fail_again(conversation_id: str, lease_holder: str | None = None) -> str:
    """Run the drain (as a retry would, with the lease it kept) and see it ask to be retried."""
    with pytest.raises(RetryLater) as retry:
        talkdesk.drain(conversation_id=conversation_id, lease_holder=lease_holder)
    return retry.value.lease_holder


def test_a_drain_waiting_to_retry_keeps_the_lease_so_nothing_else_hammers_the_vendor(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a retry waits out its backoff, a new message's drain and the sweep leave the conversation
    alone: given back, the sweep restarted a drain every sweep, ignoring backoff and Retry-After, and
    each of those scheduled a retry of its own."""
    from workers import timers

    configure(monkeypatch)
    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)
    faults(env, error_rate=1.0)
    customer_says(conversation_id, "first", "first")
    holder = fail_again(conversation_id)
    calls = httpx.get(f"{env.talkdesk_url}/_emulator/stats").json()
    customer_says(conversation_id, "second", "second")
    talkdesk.drain(conversation_id=conversation_id)  # the second message's drain: the retry holds the lease
    monkeypatch.setattr(timers, "STALE_AFTER_SECONDS", 0)
    assert timers.sweep()["drains_restarted"] == 0
    assert httpx.get(f"{env.talkdesk_url}/_emulator/stats").json()["faults"] == calls["faults"]  # no call made
    faults(env)
    talkdesk.drain(conversation_id=conversation_id, lease_holder=holder)  # the retry, when its time comes
    record = emulator_record(env, str(_conversation(env, conversation_id).talkdesk_conversation_id))
    assert [m["content"] for m in record["customer_messages"]] == ["first", "second"]


def with_an_agent(env: Env, node: EdgeNode) -> str:
    """A conversation handed to Talkdesk, its customer's socket on `node`, nothing unread there yet."""
    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)
    with_socket(env, conversation_id)
    node.frames()
    return conversation_id


def rows(env: Env, conversation_id: str) -> list[Message]:
    with session_scope(env.database_url) as session:
        return list(session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                    .order_by(Message.seq)))


def test_a_failing_message_is_retried_for_as_long_as_retry_for_not_a_count(
        env: Env, monkeypatch: pytest.MonkeyPatch, node: EdgeNode) -> None:
    configure(monkeypatch, RETRY_FOR="1h")
    conversation_id = with_an_agent(env, node)
    faults(env, error_rate=1.0)
    customer_says(conversation_id, "hello", "are you there?")
    holder = None
    for _ in range(12):  # twice the old count bound of 6
        holder = fail_again(conversation_id, holder)
    pending = next(r for r in rows(env, conversation_id) if r.client_message_id == "hello")
    assert (pending.status, pending.attempts) == ("pending", 12)
    faults(env)
    talkdesk.drain(conversation_id=conversation_id, lease_holder=holder)
    assert node.statuses() == [("hello", "delivered")]
    record = emulator_record(env, str(_conversation(env, conversation_id).talkdesk_conversation_id))
    assert [m["content"] for m in record["customer_messages"]] == ["are you there?"]


def test_waiting_messages_are_reported_delayed_once_then_delivered_in_order(
        env: Env, monkeypatch: pytest.MonkeyPatch, node: EdgeNode) -> None:
    configure(monkeypatch, DELAYED_AFTER="0.2")
    conversation_id = with_an_agent(env, node)
    faults(env, error_rate=1.0)
    customer_says(conversation_id, "one", "first")
    customer_says(conversation_id, "two", "second")
    holder = fail_again(conversation_id)
    assert node.statuses() == []  # failing, but not for long yet
    time.sleep(0.3)
    customer_says(conversation_id, "three", "third")  # waits behind them, not long yet
    holder = fail_again(conversation_id, holder)
    assert node.statuses() == [("one", "delayed"), ("two", "delayed")]
    notes = [r.body for r in rows(env, conversation_id) if r.sender == "system" and r.kind == "message"]
    assert notes == ["We are having trouble reaching the agent right now. Your messages are saved and will be "
                     "delivered as soon as we can."]
    time.sleep(0.3)
    holder = fail_again(conversation_id, holder)
    assert node.statuses() == [("three", "delayed")]  # each reported once; the note once per outage
    assert len([r for r in rows(env, conversation_id) if r.sender == "system" and r.kind == "message"]) == 1

    faults(env)
    talkdesk.drain(conversation_id=conversation_id, lease_holder=holder)
    assert node.statuses() == [("one", "delivered"), ("two", "delivered"), ("three", "delivered")]
    record = emulator_record(env, str(_conversation(env, conversation_id).talkdesk_conversation_id))
    assert [m["content"] for m in record["customer_messages"]] == ["first", "second", "third"]


def test_past_retry_for_the_message_is_a_dead_letter_and_the_customer_reads_why(
        env: Env, monkeypatch: pytest.MonkeyPatch, node: EdgeNode) -> None:
    configure(monkeypatch, RETRY_FOR="0.3")
    conversation_id = with_an_agent(env, node)
    faults(env, error_rate=1.0)
    customer_says(conversation_id, "late", "hello?")
    time.sleep(0.4)
    assert drain_until_settled(conversation_id) == []  # no retry: the time is up
    (failed,) = [f for f in node.frames() if f["type"] == "status"]
    assert failed == {"type": "status", "id": "late", "status": "failed",
                      "detail": "This message could not be delivered to the agent."}
    dead = next(r for r in rows(env, conversation_id) if r.client_message_id == "late")
    assert (dead.status, dead.error_class, dead.attempts) == ("failed", "transient", 1)


def test_a_conversation_talkdesk_forgot_goes_back_to_the_bot_and_the_next_agent_gets_everything(
        env: Env, monkeypatch: pytest.MonkeyPatch, node: EdgeNode) -> None:
    from workers import lex

    configure(monkeypatch)
    conversation_id = with_an_agent(env, node)
    first_talkdesk_id = str(_conversation(env, conversation_id).talkdesk_conversation_id)
    httpx.post(f"{env.talkdesk_url}/_emulator/conversations/{first_talkdesk_id}/forget").raise_for_status()

    customer_says(conversation_id, "lost-1", "is anyone there?")
    customer_says(conversation_id, "lost-2", "my card was charged twice")
    assert drain_until_settled(conversation_id) == []
    state = _conversation(env, conversation_id)
    assert (state.state, state.talkdesk_conversation_id) == ("handoff_failed", None)
    lost = [r for r in rows(env, conversation_id) if r.client_message_id in ("lost-1", "lost-2")]
    assert [(r.status, r.error_class) for r in lost] == [("skipped", "conversation_gone")] * 2
    frames = node.frames()
    assert [(f["id"], f["status"]) for f in frames if f["type"] == "status"] == [
        ("lost-1", "failed"), ("lost-2", "failed")]
    assert "Ask for an agent again" in frames[0]["detail"]
    # No dead letter: nothing an operator must replay.
    assert not [r for r in rows(env, conversation_id) if r.status == "failed"]

    customer_says(conversation_id, "again", "I want to talk to an agent")
    lex.drain(conversation_id=conversation_id)
    assert drain_until_settled(conversation_id) == []
    state = _conversation(env, conversation_id)
    assert state.state == "agent_queued"
    assert state.talkdesk_conversation_id not in (None, first_talkdesk_id)
    handed_over = [m["content"] for m in emulator_record(env, str(state.talkdesk_conversation_id))["previous_messages"]]
    assert handed_over[0] == "what is my balance"
    assert "is anyone there?" in handed_over and "my card was charged twice" in handed_over
    assert handed_over.index("is anyone there?") < handed_over.index("my card was charged twice")


def _conversation(env: Env, conversation_id: str) -> Conversation:
    with session_scope(env.database_url) as session:
        return session.get_one(Conversation, conversation_id)
