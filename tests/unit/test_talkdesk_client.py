"""shared/clients/talkdesk.py against the Talkdesk emulator over real HTTP, and `classify` on plain responses."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from emulators.talkdesk.app import create_app
from emulators.talkdesk.config import EmulatorConfig
from shared.clients.errors import ConversationEndedError, ConversationGoneError, PermanentError, TransientError
from shared.clients.talkdesk import SentMessage, TalkdeskClient, TalkdeskCredentials, classify
from tools.harness.servers import free_port, serve_asgi

CREDENTIALS = TalkdeskCredentials("lexdesk-emulator-client", "lexdesk-emulator-secret", "emulator-touchpoint")
START_BODY: dict[str, Any] = {
    "touchpoint_id": "emulator-touchpoint",
    "subject": "Chat with Dana",
    "contact_person": {"email": "dana@example.com"},
    "context_parameters": {
        "contact_name": "Dana",
        "contact_phone": "",
        "contact_reason": "Intents: CheckBalance > TalkToAgent; Sentiment: NEGATIVE",
        "website_location": "https://bank.example.com/help",
    },
    "previous_messages": [
        {"type": "USER", "content": "what is my balance", "created_at": "2024-05-01T10:00:00+00:00"},
        {"type": "EXTERNAL", "content": "Which account?", "created_at": "2024-05-01T10:00:01+00:00"},
        {"type": "USER", "content": "I want to talk to an agent", "created_at": "2024-05-01T10:00:05+00:00"},
    ],
}


@dataclass
class Talkdesk:
    url: str
    app: FastAPI

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_emulator/stats").raise_for_status().json()

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_emulator/conversations/{conversation_id}").raise_for_status().json()

    def faults(self, **knobs: Any) -> None:
        httpx.put(f"{self.url}/_emulator/faults", json=knobs).raise_for_status()

    def client(self, timeout: float = 5.0, credentials: TalkdeskCredentials = CREDENTIALS) -> TalkdeskClient:
        return TalkdeskClient(self.url, self.url, credentials, timeout=timeout)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=7)


@pytest.fixture
def talkdesk(emulator_config: EmulatorConfig) -> Iterator[Talkdesk]:
    app = create_app(emulator_config)
    with serve_asgi(app) as url:
        yield Talkdesk(url, app)


@pytest.fixture
def client(talkdesk: Talkdesk) -> Iterator[TalkdeskClient]:
    client = talkdesk.client()
    yield client
    client.close()


# -- the token ------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    conversation_id = client.start_conversation(START_BODY, "start-1")
    client.send_message(conversation_id, "hello", "msg-1")
    client.send_message(conversation_id, "still there?", "msg-2")
    stats = talkdesk.stats()
    assert stats["tokens_issued"] == 1
    assert stats["messages_received"] == 2


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(token_ttl=2)])
def test_short_lived_token_is_refreshed_before_it_expires(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    conversation_id = client.start_conversation(START_BODY, "start-1")
    client.send_message(conversation_id, "first", "msg-1")
    assert talkdesk.stats()["tokens_issued"] == 1
    # The 2 s token is refreshed at 90% of its life (1.8 s), while the emulator still accepts it (2 s):
    # only a client that refreshes ahead of expiry asks for a second token here.
    time.sleep(1.9)
    sent = client.send_message(conversation_id, "second", "msg-2")
    assert sent.id == conversation_id
    assert talkdesk.stats()["tokens_issued"] == 2
    contents = [m["content"] for m in talkdesk.conversation(conversation_id)["customer_messages"]]
    assert contents == ["first", "second"]


def test_revoked_token_is_fetched_again_once(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    conversation_id = client.start_conversation(START_BODY, "start-1")
    talkdesk.app.state.emulator.store.tokens.clear()  # Talkdesk forgets (revokes) every token
    sent = client.send_message(conversation_id, "after revocation", "msg-1")
    assert sent.message_id
    stats = talkdesk.stats()
    assert stats["tokens_issued"] == 2
    assert stats["messages_received"] == 1


def test_expired_token_is_fetched_again_once(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    conversation_id = client.start_conversation(START_BODY, "start-1")
    for token in talkdesk.app.state.emulator.store.tokens.values():
        token.expires_at = 0.0  # expired on Talkdesk's side, though the client thinks it has an hour left
    client.send_message(conversation_id, "after expiry", "msg-1")
    assert talkdesk.stats()["tokens_issued"] == 2
    assert [m["content"] for m in talkdesk.conversation(conversation_id)["customer_messages"]] == ["after expiry"]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(token_ttl=1e-6)])
def test_a_second_401_is_not_retried_again(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    # Every token the emulator issues is dead on arrival: one re-fetch, then the 401 is the answer.
    with pytest.raises(PermanentError) as caught:
        client.start_conversation(START_BODY, "start-1")
    assert caught.value.status == 401
    assert not caught.value.transient
    stats = talkdesk.stats()
    assert stats["tokens_issued"] == 2
    assert stats["conversations"] == 0


def test_wrong_client_secret_is_a_permanent_401(talkdesk: Talkdesk) -> None:
    client = talkdesk.client(credentials=TalkdeskCredentials("lexdesk-emulator-client", "wrong", "emulator-touchpoint"))
    try:
        with pytest.raises(PermanentError) as caught:
            client.start_conversation(START_BODY, "start-1")
    finally:
        client.close()
    assert caught.value.status == 401
    assert type(caught.value) is PermanentError
    assert "wrong" not in str(caught.value)
    stats = talkdesk.stats()
    assert stats["tokens_issued"] == 0
    assert stats["conversations"] == 0


# -- the API ----------------------------------------------------------------------------------------


def test_start_conversation_returns_an_id_and_sends_the_body(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    conversation_id = client.start_conversation(START_BODY, "handoff-42")
    assert conversation_id
    recorded = talkdesk.conversation(conversation_id)
    assert recorded["id"] == conversation_id
    assert recorded["status"] == "open"
    assert recorded["request"] == START_BODY
    assert recorded["idempotency_key"] == "handoff-42"
    assert [m["content"] for m in recorded["previous_messages"]] == [
        "what is my balance", "Which account?", "I want to talk to an agent"]


def test_same_idempotency_key_starts_one_conversation(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    first = client.start_conversation(START_BODY, "handoff-7")
    second = client.start_conversation(START_BODY, "handoff-7")
    third = client.start_conversation(START_BODY, "handoff-8")
    assert first == second
    assert third != first
    stats = talkdesk.stats()
    assert stats["conversations"] == 2
    assert stats["duplicates_absorbed"] == 1


def test_send_message_returns_sent_message(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    conversation_id = client.start_conversation(START_BODY, "start-1")
    sent = client.send_message(conversation_id, "my card was declined", "row-17")
    assert isinstance(sent, SentMessage)
    assert sent.id == conversation_id
    assert sent.partial_fail_reason is None
    assert sent.created_at is not None and sent.created_at.endswith("Z")
    messages = talkdesk.conversation(conversation_id)["customer_messages"]
    assert len(messages) == 1
    assert messages[0]["message_id"] == sent.message_id
    assert messages[0]["content"] == "my card was declined"
    assert messages[0]["idempotency_key"] == "row-17"
    # A retried call with the same key has one effect and the same answer.
    again = client.send_message(conversation_id, "my card was declined", "row-17")
    assert again.message_id == sent.message_id
    assert len(talkdesk.conversation(conversation_id)["customer_messages"]) == 1


def test_send_after_end_raises_conversation_ended(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    conversation_id = client.start_conversation(START_BODY, "start-1")
    client.end_conversation(conversation_id)
    recorded = talkdesk.conversation(conversation_id)
    assert recorded["status"] == "ended"
    assert recorded["ended_by"] == "customer"
    with pytest.raises(ConversationEndedError) as caught:
        client.send_message(conversation_id, "anyone?", "msg-after-end")
    assert caught.value.code == "3016011"
    assert caught.value.status == 400
    assert isinstance(caught.value, PermanentError)
    assert caught.value.error_class == "conversation_ended"
    assert talkdesk.conversation(conversation_id)["customer_messages"] == []
    with pytest.raises(ConversationEndedError):
        client.end_conversation(conversation_id)


def test_unknown_conversation_is_gone_not_just_permanent(client: TalkdeskClient) -> None:
    # Talkdesk no longer knows it (expired, removed): the worker hands the chat back to the bot instead
    # of dead-lettering every later message (workers/talkdesk.py).
    with pytest.raises(ConversationGoneError) as caught:
        client.send_message("00000000-0000-0000-0000-000000000000", "hello", "msg-1")
    assert caught.value.status == 404
    assert isinstance(caught.value, PermanentError)
    assert caught.value.error_class == "conversation_gone"
    with pytest.raises(ConversationGoneError):
        client.end_conversation("00000000-0000-0000-0000-000000000000")


def test_unknown_touchpoint_error_names_the_field(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    with pytest.raises(PermanentError) as caught:
        client.start_conversation({**START_BODY, "touchpoint_id": "nope"}, "start-1")
    assert caught.value.status == 404
    assert "touchpoint_id: unknown touchpoint" in str(caught.value)
    assert talkdesk.stats()["conversations"] == 0


def test_invalid_body_is_a_permanent_422_naming_the_field(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    body = {key: value for key, value in START_BODY.items() if key != "subject"}
    with pytest.raises(PermanentError) as caught:
        client.start_conversation(body, "start-1")
    assert caught.value.status == 422
    assert "subject" in str(caught.value)
    assert talkdesk.stats()["conversations"] == 0


# -- failures -----------------------------------------------------------------------------------------


def test_server_errors_are_transient_and_have_no_effect(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    conversation_id = client.start_conversation(START_BODY, "start-1")
    talkdesk.faults(error_rate=1)
    with pytest.raises(TransientError) as caught:
        client.send_message(conversation_id, "lost", "msg-1")
    assert caught.value.status in (500, 503)
    with pytest.raises(TransientError):
        client.start_conversation(START_BODY, "start-2")
    stats = talkdesk.stats()
    assert stats["conversations"] == 1
    assert stats["messages_received"] == 0
    assert stats["faults_total"] == 2
    talkdesk.faults(error_rate=0)
    client.send_message(conversation_id, "found", "msg-1")
    assert [m["content"] for m in talkdesk.conversation(conversation_id)["customer_messages"]] == ["found"]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(error_rate=1, seed=1)])
def test_server_error_while_fetching_the_token_is_transient(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    with pytest.raises(TransientError) as caught:
        client.start_conversation(START_BODY, "start-1")
    assert caught.value.status is not None and caught.value.status >= 500
    assert talkdesk.stats()["conversations"] == 0


def test_rate_limit_is_transient_with_retry_after(talkdesk: Talkdesk, client: TalkdeskClient) -> None:
    client.start_conversation(START_BODY, "start-1")
    talkdesk.faults(rate_limit_rate=1, retry_after=3)
    with pytest.raises(TransientError) as caught:
        client.start_conversation(START_BODY, "start-2")
    assert caught.value.status == 429
    assert caught.value.retry_after == 3.0
    assert talkdesk.stats()["conversations"] == 1


def test_a_stall_longer_than_the_timeout_is_transient(talkdesk: Talkdesk) -> None:
    client = talkdesk.client(timeout=0.5)
    try:
        conversation_id = client.start_conversation(START_BODY, "start-1")
        talkdesk.faults(stall_rate=1, stall_seconds=2)
        with pytest.raises(TransientError) as caught:
            client.send_message(conversation_id, "slow", "msg-1")
    finally:
        client.close()
    assert "timed out" in str(caught.value)
    assert caught.value.status is None
    assert talkdesk.stats()["faults"]["stall"] == 1


def test_nothing_listening_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = TalkdeskClient(url, url, CREDENTIALS, timeout=2.0)
    try:
        with pytest.raises(TransientError) as caught:
            client.start_conversation(START_BODY, "start-1")
    finally:
        client.close()
    assert caught.value.status is None
    assert caught.value.error_class == "transient"


# -- classify, on plain responses ---------------------------------------------------------------------------


def _classify(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    if body is None:
        response = httpx.Response(status, headers=headers, text="")
    else:
        response = httpx.Response(status, headers=headers, json=body)
    return classify("POST", "https://api.talkdeskapp.com/digital-connect/conversations", response)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_classify_transient_statuses(status: int) -> None:
    error = _classify(status, {"code": "1001000", "message": "try later"})
    assert type(error) is TransientError
    assert error.transient
    assert error.status == status
    assert error.code == "1001000"
    assert f"-> {status} 1001000 try later" in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_classify_permanent_statuses(status: int) -> None:
    error = _classify(status, {"code": "3016001", "message": "Invalid request body"})
    assert type(error) is PermanentError
    assert not error.transient
    assert error.status == status
    assert error.retry_after is None


def test_classify_conversation_ended_code() -> None:
    error = _classify(400, {"code": "3016011", "message": "Conversation has already ended"})
    assert type(error) is ConversationEndedError
    assert error.code == "3016011"
    assert error.error_class == "conversation_ended"
    assert "Conversation has already ended" in str(error)


def test_classify_conversation_ended_code_given_as_a_number() -> None:
    error = _classify(400, {"code": 3016011, "message": "Conversation has already ended"})
    assert type(error) is ConversationEndedError


def test_classify_retry_after_in_seconds() -> None:
    assert _classify(429, {}, {"Retry-After": "7"}).retry_after == 7.0
    assert _classify(503, {}, {"Retry-After": "0"}).retry_after == 0.0
    assert _classify(503, {}, {"Retry-After": "-5"}).retry_after == 0.0
    assert _classify(503, {}).retry_after is None
    assert _classify(503, {}, {"Retry-After": "soon"}).retry_after is None


def test_classify_retry_after_as_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    retry_after = _classify(429, {}, {"Retry-After": later}).retry_after
    assert retry_after is not None
    assert 110.0 <= retry_after <= 120.0
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=120), usegmt=True)
    assert _classify(429, {}, {"Retry-After": earlier}).retry_after == 0.0


def test_classify_message_includes_talkdesk_fields() -> None:
    error = _classify(422, {
        "code": "3016001",
        "message": "Invalid request body",
        "fields": [
            {"name": "subject", "description": "Field required"},
            {"name": "previous_messages.0.type", "description": "Input should be 'EXTERNAL' or 'USER'"},
        ],
    })
    text = str(error)
    assert "subject: Field required" in text
    assert "previous_messages.0.type: Input should be 'EXTERNAL' or 'USER'" in text
    assert text.startswith("POST https://api.talkdeskapp.com/digital-connect/conversations -> 422 3016001")


def test_classify_non_json_body() -> None:
    response = httpx.Response(502, text="<html>Bad Gateway</html>")
    error = classify("DELETE", "https://x/digital-connect/conversations/1", response)
    assert type(error) is TransientError
    assert error.code is None
    assert "<html>Bad Gateway</html>" in str(error)
    listed = classify("GET", "https://x", httpx.Response(400, json=["not", "an", "object"]))
    assert type(listed) is PermanentError
    assert listed.code is None


def test_classify_oauth_error_body() -> None:
    error = _classify(401, {"error": "invalid_client", "error_description": "Client authentication failed."})
    assert type(error) is PermanentError
    assert "invalid_client" in str(error)


# -- attacks: ids that reach a Talkdesk URL ----------------------------------------------------------

TRAVERSALS = ["..%2F..%2Fevil%2Fpath%3Fx%3D", "../../evil/path?x=", "a/b", "id?x=1", "id#frag", "a\nb", "caf\u00e9",
              "", " padded", "%2e%2e"]


class Recorder:
    """A Talkdesk stand-in over real HTTP that records every request line it is sent, whatever the path,
    and answers `conversation_id` when asked to start a conversation."""

    def __init__(self, conversation_id: str = "c-1") -> None:
        self.seen: list[str] = []
        self.conversation_id = conversation_id

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.seen.append(f"{scope['method']} {scope['raw_path'].decode()}")
        body: dict[str, Any] = {"id": self.conversation_id, "message_id": "m-1", "created_at": "now"}
        if scope["path"] == "/oauth/token":
            body = {"access_token": "t", "token_type": "Bearer", "expires_in": 3600}
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, TalkdeskClient]]:
    app = Recorder()
    with serve_asgi(app) as url:
        client = TalkdeskClient(url, url, CREDENTIALS, timeout=5)
        yield app, client
        client.close()


@pytest.mark.parametrize("conversation_id", TRAVERSALS)
def test_attack_an_id_that_is_not_talkdesks_shape_reaches_no_url(recorder: tuple[Recorder, TalkdeskClient],
                                                                  conversation_id: str) -> None:
    """`..%2F..%2Fevil%2Fpath%3Fx%3D` made lexdesk send `POST /evil/path?x=/messages` and `DELETE
    /evil/path?x=` with its bearer token; a newline or a non-ASCII letter raised outside the error
    classes, so the row was retried for ever. Now each is a permanent error before any request."""
    app, client = recorder
    with pytest.raises(PermanentError, match="not a Talkdesk conversation id"):
        client.send_message(conversation_id, "hello", idempotency_key="k-1")
    with pytest.raises(PermanentError, match="not a Talkdesk conversation id"):
        client.end_conversation(conversation_id)
    assert app.seen == []


def test_a_genuine_id_goes_out_as_one_path_segment(recorder: tuple[Recorder, TalkdeskClient]) -> None:
    app, client = recorder
    client.send_message("Ab-9_z", "hello", idempotency_key="k")
    client.end_conversation("Ab-9_z")
    assert app.seen == ["POST /oauth/token", "POST /digital-connect/conversations/Ab-9_z/messages",
                        "DELETE /digital-connect/conversations/Ab-9_z"]


def test_a_header_that_is_not_ascii_is_a_permanent_error_not_a_crash(recorder: tuple[Recorder, TalkdeskClient],
                                                                      ) -> None:
    app, client = recorder
    with pytest.raises(PermanentError, match="x-idempotency-key must be printable ASCII"):
        client.send_message("c-1", "hello", idempotency_key="cl\u00e9-1")
    assert not any("messages" in line for line in app.seen)


def test_a_talkdesk_answer_with_an_unusable_id_is_refused_before_it_is_stored(
        recorder: tuple[Recorder, TalkdeskClient]) -> None:
    app, client = recorder
    app.conversation_id = "../../admin"
    with pytest.raises(PermanentError, match="unknown shape"):
        client.start_conversation(START_BODY, idempotency_key="start-1")
