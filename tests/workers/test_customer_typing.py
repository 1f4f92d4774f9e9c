"""The customer's typing, told to the agent (workers/talkdesk.py customer_typing), called directly against
the Talkdesk emulator over HTTP: only while an agent has the chat, only with
LEXDESK_FORWARD_CUSTOMER_TYPING on, and best effort: a failing Talkdesk is logged, never retried."""

from __future__ import annotations

import httpx
import pytest

from shared.db import session_scope
from shared.models import Conversation, ConversationState
from tests.workers.conftest import Env
from tests.workers.test_talkdesk_worker import at_agent, drain_until_settled, emulator_record, faults
from workers import talkdesk


def with_the_agent(env: Env) -> tuple[str, str]:
    """A conversation an agent has (the join callback applied), and its Talkdesk id."""
    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)
    with session_scope(env.database_url) as session:
        conversation = session.get_one(Conversation, conversation_id)
        conversation.state = ConversationState.AGENT_ACTIVE
        talkdesk_id = str(conversation.talkdesk_conversation_id)
    return conversation_id, talkdesk_id


@pytest.fixture
def forwarding(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("LEXDESK_FORWARD_CUSTOMER_TYPING", "true")
    get_settings.cache_clear()


def typing_changes(env: Env, talkdesk_id: str) -> list[bool]:
    return [e["active"] for e in emulator_record(env, talkdesk_id)["events"] if e["type"] == "customer_typing"]


def test_typing_reaches_the_agent_and_stopping_clears_it(env: Env, forwarding: None) -> None:
    conversation_id, talkdesk_id = with_the_agent(env)
    talkdesk.customer_typing(conversation_id=conversation_id, active=True)
    assert emulator_record(env, talkdesk_id)["customer_typing"] is True
    talkdesk.customer_typing(conversation_id=conversation_id, active=False)
    assert emulator_record(env, talkdesk_id)["customer_typing"] is False
    assert typing_changes(env, talkdesk_id) == [True, False]


def test_nothing_is_sent_before_an_agent_has_the_chat_or_with_forwarding_off(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import get_settings

    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)  # handed over, queued: nobody has taken it
    monkeypatch.setenv("LEXDESK_FORWARD_CUSTOMER_TYPING", "true")
    get_settings.cache_clear()
    with session_scope(env.database_url) as session:
        conversation = session.get_one(Conversation, conversation_id)
        talkdesk_id = str(conversation.talkdesk_conversation_id)
        assert conversation.state == ConversationState.AGENT_QUEUED
    talkdesk.customer_typing(conversation_id=conversation_id, active=True)
    assert typing_changes(env, talkdesk_id) == []
    talkdesk.customer_typing(conversation_id="no-such-conversation", active=True)  # nothing to tell, no error

    monkeypatch.setenv("LEXDESK_FORWARD_CUSTOMER_TYPING", "false")
    get_settings.cache_clear()
    active_id, active_talkdesk_id = with_the_agent(env)
    talkdesk.customer_typing(conversation_id=active_id, active=True)
    assert typing_changes(env, active_talkdesk_id) == []


def test_a_failing_talkdesk_drops_the_typing_without_a_retry_or_a_dead_letter(
        env: Env, forwarding: None) -> None:
    conversation_id, talkdesk_id = with_the_agent(env)
    faults(env, error_rate=1.0)
    stats = httpx.get(f"{env.talkdesk_url}/_emulator/stats").json()
    talkdesk.customer_typing(conversation_id=conversation_id, active=True)  # returns: nothing raised
    after = httpx.get(f"{env.talkdesk_url}/_emulator/stats").json()
    assert after["faults_total"] == stats["faults_total"] + 1  # one call, not retried
    faults(env)
    assert emulator_record(env, talkdesk_id)["customer_typing"] is False
