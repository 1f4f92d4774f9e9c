"""Talkdesk may call back before the worker that started the conversation has stored its id (found
by `lexdesk chaos`): while a handoff is in flight an unknown id is 503 + Retry-After, so Talkdesk
retries, instead of a 404 it takes as final."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from services.callback.app import create_app
from shared.db import session_scope
from shared.migrate import upgrade
from shared.models import Conversation, ConversationState
from shared.settings import load_settings
from shared.store import create_conversation

KEY = "k" * 16


def test_unknown_talkdesk_id_is_retry_while_a_handoff_is_in_flight(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lexdesk.sqlite'}"
    upgrade(url)
    settings = load_settings({"LEXDESK_DATABASE_URL": url, "LEXDESK_CALLBACK_API_KEY": KEY,
                              "LEXDESK_RESUME_TOKEN_SECRET": "r" * 16, "LEXDESK_ADMIN_TOKEN": "a" * 16,
                              "LEXDESK_BROKER_URL": "memory://"})
    client = TestClient(create_app(settings))
    path = "/talkdesk/conversations/not-stored-yet/agent-joined"

    assert client.post(path, json={}, headers={"X-Api-Key": KEY}).status_code == 404
    with session_scope(url) as session:
        conversation = create_conversation(session)
        conversation.state = ConversationState.HANDOFF_REQUESTED
        conversation_id = conversation.id
    response = client.post(path, json={}, headers={"X-Api-Key": KEY})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "unknown_conversation_yet"
    with session_scope(url) as session:  # the worker stored the id: that conversation is known now
        stored = session.get_one(Conversation, conversation_id)
        stored.state, stored.talkdesk_conversation_id = ConversationState.AGENT_QUEUED, "not-stored-yet"
    assert client.post(path, json={}, headers={"X-Api-Key": KEY}).status_code == 202
    assert client.post("/talkdesk/conversations/never/agent-joined", json={},
                       headers={"X-Api-Key": KEY}).status_code == 404
