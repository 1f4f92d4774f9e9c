"""timers.sweep, called directly: it re-drains what a crash stranded (drains have no outbox row:
the pending rows are the record) and does nothing else, every run, for ever."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from shared.db import session_scope
from shared.models import Message, utcnow
from shared.store import attach_connection, create_conversation, detach_connection
from tests.workers.conftest import Env, customer_says
from tests.workers.pipeline import NODE_ID, Pipeline


@pytest.fixture
def pipeline(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    running = Pipeline(monkeypatch)
    yield running
    running.close()


def _age(env: Env, conversation_id: str, seconds: float = 120) -> None:
    with session_scope(env.database_url) as session:
        session.execute(update(Message).where(Message.conversation_id == conversation_id)
                        .values(created_at=utcnow() - timedelta(seconds=seconds)))


def _sweep() -> dict[str, int]:
    from workers import timers

    return timers.sweep()


def test_a_message_whose_drain_was_never_published_is_drained_by_the_sweep(env: Env, pipeline: Pipeline) -> None:
    with session_scope(env.database_url) as session:
        conversation_id = create_conversation(session).id
        attach_connection(session, conversation_id, "socket-1", NODE_ID)
    customer_says(conversation_id, "m0", "what is my balance")
    pipeline.drop_queued()  # the publish after commit was lost (the process died right after the commit)
    _age(env, conversation_id)
    with pipeline.measure() as cost:
        assert _sweep()["drains_restarted"] == 1
    assert cost.tasks["lex.drain"] == 1
    assert any("checking or savings" in f.get("text", "").lower() for f in pipeline.shown)


def test_frames_for_a_customer_with_no_socket_cost_the_sweep_nothing(env: Env, pipeline: Pipeline) -> None:
    """Today the sweep re-published routing.deliver every run, for ever, for conversations whose frames
    waited for a socket (closed ones included: 9 commits a sweep for 3 of them)."""
    with session_scope(env.database_url) as session:
        conversation_id = create_conversation(session).id
        attach_connection(session, conversation_id, "socket-1", NODE_ID)
    with pipeline.measure():
        customer_says(conversation_id, "m0", "what is my balance")
    with session_scope(env.database_url) as session:
        detach_connection(session, "socket-1")
    with pipeline.measure():
        customer_says(conversation_id, "m1", "checking")  # the answer waits for the customer's resume
    from shared.inbound import customer_ended
    from shared.settings import get_settings

    customer_ended(get_settings(), conversation_id)
    pipeline.run()
    _age(env, conversation_id)
    for _ in range(3):
        with pipeline.measure() as cost:
            assert _sweep()["drains_restarted"] == 0
        assert cost.publishes == 0 and not cost.tasks, cost
