"""POST /_emulator/conversations/{id}/forget, as when Talkdesk expires or removes a conversation: it is
gone from the API (404, as for an id that never existed, not 3016011), from the agent and from the console."""

from __future__ import annotations

import time
import uuid

from tests.browser import chromium
from tests.emulators.test_talkdesk_emulator import (
    Receiver,
    assert_talkdesk_error,
    auth,
    create,
    emulator,
    emulator_with_receiver,
    record,
    send,
    stats,
    wait_until,
)


def test_forget_answers_404_as_for_an_id_that_never_existed() -> None:
    with emulator() as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert send(client, headers, conversation_id, "hello").status_code == 201
        assert client.post(f"/_emulator/conversations/{conversation_id}/forget").json() == {
            "forgotten": conversation_id
        }

        never = str(uuid.uuid4())
        for target in (conversation_id, never):
            body = assert_talkdesk_error(send(client, headers, target, "hi"), 404, "3016005")
            assert body == {
                "code": "3016005",
                "message": "Conversation not found",
                "description": f"No conversation with id {target}.",
                "fields": [],
            }
            deleted = client.delete(f"/digital-connect/conversations/{target}", headers=headers)
            assert assert_talkdesk_error(deleted, 404) == body
            assert client.get(f"/_emulator/conversations/{target}").status_code == 404
            again = client.post(f"/_emulator/conversations/{target}/forget")
            assert assert_talkdesk_error(again, 404) == body
        assert client.get("/_emulator/conversations").json() == []
        assert stats(client)["conversations"] == 0


def test_forget_is_not_the_same_as_ended() -> None:
    with emulator() as client:
        headers = auth(client)
        ended = create(client, headers)
        assert client.delete(f"/digital-connect/conversations/{ended}", headers=headers).status_code == 204
        assert_talkdesk_error(send(client, headers, ended, "hi"), 400, "3016011")
        assert client.post(f"/_emulator/conversations/{ended}/forget").status_code == 200
        assert_talkdesk_error(send(client, headers, ended, "hi"), 404, "3016005")


def test_the_agent_stops_acting_on_a_forgotten_conversation() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver, agent_join_delay=0.3) as client:
        headers = auth(client)
        forgotten = create(client, headers)
        kept = create(client, headers)
        assert client.post(f"/_emulator/conversations/{forgotten}/forget").status_code == 200
        wait_until(lambda: len(receiver.messages(kept)) == 1)
        time.sleep(0.3)
        assert receiver.accepted(forgotten) == []
        assert [c.action for c in receiver.accepted(kept)] == ["agent-joined", "messages"]
        assert record(client, kept)["status"] == "open"


def test_the_create_key_of_a_forgotten_conversation_does_not_replay_it() -> None:
    with emulator() as client:
        headers = auth(client, key="create-1")
        first = create(client, headers)
        assert client.post(f"/_emulator/conversations/{first}/forget").status_code == 200
        second = create(client, headers)  # the same key: a new conversation, not the forgotten id
        assert second != first
        assert create(client, headers) == second


def test_the_console_drops_a_forgotten_conversation() -> None:
    with emulator() as client, chromium() as browser:
        headers = auth(client)
        conversation_id = create(client, headers)
        page = browser.new_page()
        page.goto(str(client.base_url.join("/console")))
        page.locator("#conversation-list li").first.click()
        page.wait_for_function(
            "id => document.getElementById('detail-title').textContent.includes(id)", arg=conversation_id
        )
        assert client.post(f"/_emulator/conversations/{conversation_id}/forget").status_code == 200
        page.wait_for_function(
            "() => document.getElementById('detail-title').textContent === 'No conversation selected'",
            timeout=5000,
        )
        assert page.locator("#conversation-list").inner_text().strip() == "No conversations yet"
        assert page.locator("#empty").is_visible() and not page.locator("#handover").is_visible()
        assert page.locator("#send-button").is_disabled() and page.locator("#end-button").is_disabled()
        time.sleep(1.2)  # one more refresh: no error about the missing conversation
        assert page.locator("#error").inner_text() == ""
