"""Dead letters and replay, at the consumer level: a message the Talkdesk outage dead-lettered is
listed, replayed once, delivered once; replaying again has no effect."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from shared import dead_letters
from shared.db import session_scope
from shared.models import Conversation, Message
from shared.settings import get_settings
from tests.workers.conftest import Env, customer_says
from tests.workers.test_talkdesk_worker import at_agent, drain_until_settled, emulator_record, faults, faults_off

__all__ = ["faults_off"]  # the autouse fixture that turns the emulator's faults off after each test


def dead_letter(env: Env) -> tuple[str, int]:
    conversation_id = at_agent(env)
    drain_until_settled(conversation_id)
    faults(env, error_rate=1.0)
    customer_says(conversation_id, "doomed", "please reach the agent")
    drain_until_settled(conversation_id)
    faults(env)
    with session_scope(env.database_url) as session:
        found = dead_letters.list_dead_letters(session, dead_letters.DeadLetterFilter(conversation_id=conversation_id))
    assert found["total"] == 1 and found["counts"] == {"transient": 1}
    return conversation_id, found["dead_letters"][0]["id"]


def test_replay_delivers_once_and_a_second_replay_has_no_effect(env: Env) -> None:
    conversation_id, message_id = dead_letter(env)
    assert dead_letters.replay_one(get_settings(), message_id) == dead_letters.ReplayOutcome.REPLAYED
    drain_until_settled(conversation_id)
    assert dead_letters.replay_one(get_settings(), message_id) == dead_letters.ReplayOutcome.NOT_DEAD
    drain_until_settled(conversation_id)
    with session_scope(env.database_url) as session:
        message = session.get_one(Message, message_id)
        assert (message.status, message.replayed) == ("delivered", True)
        talkdesk_id = session.get_one(Conversation, conversation_id).talkdesk_conversation_id or ""
    received = [m["content"] for m in emulator_record(env, talkdesk_id)["customer_messages"]]
    assert received == ["please reach the agent"]


def test_replaying_a_failed_handoff_asks_for_an_agent_again(env: Env) -> None:
    conversation_id = at_agent(env)
    faults(env, error_rate=1.0)
    drain_until_settled(conversation_id)
    faults(env)
    with session_scope(env.database_url) as session:
        assert session.get_one(Conversation, conversation_id).state == "handoff_failed"
        ids = dead_letters.matching_ids(session, dead_letters.DeadLetterFilter(error_class="transient",
                                                                               conversation_id=conversation_id))
    assert len(ids) == 1
    assert dead_letters.replay_one(get_settings(), ids[0]) == dead_letters.ReplayOutcome.REPLAYED
    drain_until_settled(conversation_id)
    with session_scope(env.database_url) as session:
        conversation = session.get_one(Conversation, conversation_id)
        assert conversation.state == "agent_queued" and conversation.talkdesk_conversation_id


def test_dead_letters_of_a_closed_conversation_are_skipped(env: Env) -> None:
    from shared.inbound import customer_ended

    conversation_id, message_id = dead_letter(env)
    customer_ended(get_settings(), conversation_id)
    assert dead_letters.replay_one(get_settings(), message_id) == dead_letters.ReplayOutcome.CLOSED


def test_cli_lists_counts_and_replays_with_a_summary(env: Env) -> None:
    conversation_id, message_id = dead_letter(env)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")}
    environ.update({"LEXDESK_DATABASE_URL": env.database_url, "LEXDESK_BROKER_URL": "memory://",
                    "COLUMNS": "200"})

    def lexdesk(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "lexdesk", *args], env=environ, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    listing = lexdesk("dead-letters", "--conversation", conversation_id)
    assert str(message_id) in listing and "transient" in listing
    assert f"would be replayed: [{message_id}]" in lexdesk("replay", "--error", "transient", "--dry-run")
    assert "matched 1, replayed 1, skipped 0" in lexdesk("replay", str(message_id))
    assert "matched 0, replayed 0, skipped 0" in lexdesk("replay", str(message_id))
    bad = subprocess.run([sys.executable, "-m", "lexdesk", "replay", "--since", "yesterday"], env=environ,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "not an ISO 8601 time" in bad.stderr
    # The drain the replay published went to the in-memory broker of that process; run it here.
    drain_until_settled(conversation_id)
    with session_scope(env.database_url) as session:
        assert session.get_one(Message, message_id).status == "delivered"
    assert httpx.get(f"{env.talkdesk_url}/healthz").status_code == 200
