"""What a message costs lexdesk's own machinery: database commits and broker publishes for one bot
turn and one agent round trip, from the edge storing the customer's message to the customer's
acknowledgement of the answer, counted with SQLAlchemy's and kombu's hooks (tests/workers/pipeline.py).
The vendors should be what limits throughput, not these."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shared.db import session_scope
from shared.store import attach_connection, create_conversation
from tests.workers.conftest import Env, customer_says
from tests.workers.pipeline import NODE_ID, Pipeline

BOT_TURN_COMMITS = 5
AGENT_ROUND_TRIP_COMMITS = 6
KEY = "callback-key-for-the-cost-test"


@pytest.fixture
def pipeline(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    running = Pipeline(monkeypatch)
    yield running
    running.close()


def _connected_conversation(env: Env) -> str:
    with session_scope(env.database_url) as session:
        conversation_id = create_conversation(session, customer_name="Ana").id
        attach_connection(session, conversation_id, "socket-1", NODE_ID)
    return conversation_id


def test_a_bot_turn_costs_a_handful_of_commits(env: Env, pipeline: Pipeline) -> None:
    conversation_id = _connected_conversation(env)
    with pipeline.measure():  # warm: clients built, first Lex session
        customer_says(conversation_id, "m0", "what is my balance", "socket-1")
    with pipeline.measure() as cost:
        customer_says(conversation_id, "m1", "checking", "socket-1")
    print(f"bot turn: {cost}")
    assert any("Checking account balance" in f.get("text", "") for f in pipeline.shown)
    assert cost.commits <= BOT_TURN_COMMITS, cost


def test_an_agent_round_trip_costs_a_handful_of_commits(env: Env, pipeline: Pipeline,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.callback.app import create_app
    from shared.settings import get_settings

    for name, value in {"LEXDESK_CALLBACK_API_KEY": KEY, "LEXDESK_ADMIN_TOKEN": "admin-token-for-the-cost-test",
                        "LEXDESK_RESUME_TOKEN_SECRET": "resume-secret-for-the-cost-test"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    callback = TestClient(create_app(get_settings()))
    conversation_id = _connected_conversation(env)
    with pipeline.measure():
        customer_says(conversation_id, "m0", "I want to talk to an agent", "socket-1")
    with session_scope(env.database_url) as session:
        from shared.models import Conversation

        talkdesk_id = session.get_one(Conversation, conversation_id).talkdesk_conversation_id
    assert talkdesk_id
    headers = {"X-Api-Key": KEY}
    with pipeline.measure():
        assert callback.post(f"/talkdesk/conversations/{talkdesk_id}/agent-joined", json={"agent_name": "Alex"},
                             headers=headers).status_code == 202
        customer_says(conversation_id, "m1", "warm-up", "socket-1")
        pipeline.run()
        assert callback.post(f"/talkdesk/conversations/{talkdesk_id}/messages", json={"id": "a0", "content": "hi"},
                             headers=headers).status_code == 202

    with pipeline.measure() as cost:
        customer_says(conversation_id, "m2", "my card was charged twice", "socket-1")
        pipeline.run()  # to Talkdesk
        assert callback.post(f"/talkdesk/conversations/{talkdesk_id}/messages",
                             json={"id": "a1", "content": "Sorry about that"}, headers=headers).status_code == 202
    print(f"agent round trip: {cost}")
    assert pipeline.shown[-1]["text"] == "Sorry about that"
    assert cost.commits <= AGENT_ROUND_TRIP_COMMITS, cost


def test_a_second_tab_on_another_node_costs_publishes_not_commits(env: Env, pipeline: Pipeline) -> None:
    """Several tabs (docs/protocol.md §2): a tab on a second edge node adds one publish per thing sent
    to the customer (the echo of their line, the bot's frames, the `delivered` status) and no commit."""
    conversation_id = _connected_conversation(env)
    with pipeline.measure():
        customer_says(conversation_id, "m0", "what is my balance", "socket-1")
    with pipeline.measure() as alone:
        customer_says(conversation_id, "m1", "what is my balance", "socket-1")
    with session_scope(env.database_url) as session:
        attach_connection(session, conversation_id, "socket-2", "another-node", max_sockets=5)
    with pipeline.measure() as two_tabs:
        customer_says(conversation_id, "m2", "what is my balance", "socket-1")
    print(f"bot turn, one tab: {alone}; two tabs on two nodes: {two_tabs}")
    assert two_tabs.commits <= BOT_TURN_COMMITS, two_tabs
    assert two_tabs.publishes == alone.publishes + 3, (alone, two_tabs)
