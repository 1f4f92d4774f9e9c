"""The talkdesk queue's consumer, called directly against the Talkdesk emulator with its fault knobs:
handoff with the transcript, order, retries, dead letters, and Talkdesk's own end of a conversation.

Called directly, a drain that must retry raises RetryLater (Celery's Task.retry re-raises outside a
worker); the test plays the worker's part and runs the drain again, as the holder of the lease the
retry kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Conversation, Message
from shared.store import create_conversation
from tests.workers.conftest import Env, customer_says
from workers.base import RetryLater

NO_FAULTS = {"error_rate": 0.0, "rate_limit_rate": 0.0, "stall_rate": 0.0, "latency": 0.0, "retry_after": 1}


@pytest.fixture(autouse=True)
def faults_off(env: Env) -> Iterator[None]:
    yield
    httpx.put(f"{env.talkdesk_url}/_emulator/faults", json=NO_FAULTS).raise_for_status()


def faults(env: Env, **knobs: Any) -> None:
    httpx.put(f"{env.talkdesk_url}/_emulator/faults", json={**NO_FAULTS, **knobs}).raise_for_status()


def at_agent(env: Env, typed_during_handoff: str | None = None) -> str:
    """A conversation the bot has handed off (Talkdesk not called yet)."""
    from workers import lex

    with session_scope(env.database_url) as session:
        conversation_id = create_conversation(session, customer_name="Ana", customer_email="ana@example.com").id
    for n, text in enumerate(["what is my balance", "checking", "I want to talk to an agent"]):
        customer_says(conversation_id, f"m{n}", text)
        lex.drain(conversation_id=conversation_id)
    if typed_during_handoff:
        customer_says(conversation_id, "typed", typed_during_handoff)
    return conversation_id


def drain_until_settled(conversation_id: str, max_runs: int = 20) -> list[RetryLater]:
    """Run the drain, and its retries as Celery would: as the holder of the lease the retry kept."""
    from workers import talkdesk

    retries: list[RetryLater] = []
    for _ in range(max_runs):
        try:
            talkdesk.drain(conversation_id=conversation_id,
                           lease_holder=retries[-1].lease_holder if retries else None)
            return retries
        except RetryLater as retry:
            retries.append(retry)
    raise AssertionError(f"drain still retrying after {max_runs} runs")


def conversation(env: Env, conversation_id: str) -> Conversation:
    with session_scope(env.database_url) as session:
        return session.get_one(Conversation, conversation_id)


def talkdesk_rows(env: Env, conversation_id: str) -> list[Message]:
    with session_scope(env.database_url) as session:
        return list(session.scalars(select(Message).where(Message.conversation_id == conversation_id,
                                                          Message.destination == "talkdesk").order_by(Message.seq)))


def emulator_record(env: Env, talkdesk_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{env.talkdesk_url}/_emulator/conversations/{talkdesk_id}").json())


def test_handoff_hands_over_the_transcript_then_sends_what_was_typed_meanwhile(env: Env) -> None:
    conversation_id = at_agent(env, typed_during_handoff="are you there?")
    assert drain_until_settled(conversation_id) == []
    state = conversation(env, conversation_id)
    assert state.state == "agent_queued" and state.talkdesk_conversation_id
    record = emulator_record(env, state.talkdesk_conversation_id)
    assert [m["content"] for m in record["previous_messages"]][:2] == [
        "what is my balance", "Which account would you like the balance for, checking or savings?"]
    assert "are you there?" not in [m["content"] for m in record["previous_messages"]]
    assert [m["content"] for m in record["customer_messages"]] == ["are you there?"]
    assert [r.status for r in talkdesk_rows(env, conversation_id)] == ["delivered", "delivered"]


def test_transient_failures_retry_with_backoff_then_dead_letter_and_the_stream_moves_on(env: Env) -> None:
    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)
    faults(env, error_rate=1.0)
    customer_says(conversation_id, "lost", "first try")
    retries = drain_until_settled(conversation_id)
    assert len(retries) == 2  # LEXDESK_MAX_ATTEMPTS=3: two retries, then the dead letter
    assert all(r.error.transient for r in retries)
    faults(env)
    customer_says(conversation_id, "next", "second try")
    assert drain_until_settled(conversation_id) == []

    rows = {r.body: r for r in talkdesk_rows(env, conversation_id)}
    dead = rows["first try"]
    assert (dead.status, dead.attempts, dead.error_class) == ("failed", 3, "transient")
    assert "500" in dead.last_error or "503" in dead.last_error
    assert rows["second try"].status == "delivered"
    record = emulator_record(env, conversation(env, conversation_id).talkdesk_conversation_id or "")
    assert [m["content"] for m in record["customer_messages"]] == ["second try"]


def test_retry_waits_at_least_retry_after_on_429(env: Env) -> None:
    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)
    faults(env, rate_limit_rate=1.0, retry_after=7)
    customer_says(conversation_id, "m", "hello")
    retries = drain_until_settled(conversation_id)
    assert retries and all(r.countdown >= 7 for r in retries)
    assert all(r.error.retry_after == 7 for r in retries)


def test_a_handoff_that_cannot_reach_talkdesk_fails_and_the_customer_is_told(env: Env) -> None:
    conversation_id = at_agent(env, typed_during_handoff="hello?")
    faults(env, error_rate=1.0)
    drain_until_settled(conversation_id)
    assert conversation(env, conversation_id).state == "handoff_failed"
    with session_scope(env.database_url) as session:
        shown = session.scalars(select(Message).where(Message.conversation_id == conversation_id,
                                                      Message.destination == "customer").order_by(Message.seq)).all()
        assert shown[-2].event == "handoff_failed"
        assert "could not reach an agent" in shown[-1].body
    assert [r.status for r in talkdesk_rows(env, conversation_id)] == ["failed", "skipped"]


def test_talkdesk_having_ended_the_conversation_closes_it_here(env: Env) -> None:
    from shared.clients.factory import talkdesk_client
    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)
    talkdesk_client().end_conversation(conversation(env, conversation_id).talkdesk_conversation_id or "")
    customer_says(conversation_id, "late", "still there?")
    assert drain_until_settled(conversation_id) == []  # 3016011 is permanent: no retry
    state = conversation(env, conversation_id)
    assert (state.state, state.closed_by) == ("closed", "agent")
    late = next(r for r in talkdesk_rows(env, conversation_id) if r.body == "still there?")
    assert (late.status, late.error_class) == ("failed", "conversation_ended")


@pytest.mark.parametrize("poison", ["line\nbreak", "caf\u00e9", "..%2F..%2Fevil%2Fpath%3Fx%3D"])
def test_attack_a_poisoned_talkdesk_id_ends_as_one_classified_failure_not_an_endless_retry(
        env: Env, poison: str) -> None:
    """An id with a newline (httpx.InvalidURL) or a non-ASCII letter (UnicodeEncodeError in the
    idempotency header) escaped the error classes: the row stayed pending with 0 attempts and the sweep
    republished it every run. Now the attempt is counted and the row is a permanent dead letter."""
    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)
    with session_scope(env.database_url) as session:
        session.get_one(Conversation, conversation_id).talkdesk_conversation_id = poison
    customer_says(conversation_id, "after", "hello?")
    assert drain_until_settled(conversation_id) == []  # permanent: no retry
    row = next(r for r in talkdesk_rows(env, conversation_id) if r.body == "hello?")
    assert (row.status, row.error_class, row.attempts) == ("failed", "permanent", 1)
    assert "not a Talkdesk conversation id" in (row.last_error or "")
