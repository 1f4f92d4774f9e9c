"""The Digital Connect API: create a conversation, send a customer message, say the customer is (or is no
longer) typing, end a conversation.

Each call goes: injected faults, bearer token, conversation lookup, idempotent replay, body validation,
state checks, effect, save (a no-op without a state file). Nothing awaits between the replay check and
the effect, so a key is applied once. Typing takes no key: it is ephemeral, and the latest call wins.
An unknown conversation (never created, or forgotten) is a 404 with code CONVERSATION_NOT_FOUND; an
ended one is a 400 with CONVERSATION_ENDED (3016011).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from .context import Emulator
from .errors import TOUCHPOINT_NOT_FOUND, TalkdeskError, conversation_ended, conversation_not_found
from .oauth import require_token
from .schemas import CreateConversation, CustomerTyping, SendMessage, parse_json_object, validate
from .state import Conversation, CustomerMessage, StoredResponse, new_id, now_iso

IDEMPOTENCY_HEADER = "x-idempotency-key"


def _replay(emu: Emulator, scope: str, key: str | None) -> JSONResponse | None:
    if not key:
        return None
    stored = emu.store.idempotent.get((scope, key))
    if stored is None:
        return None
    emu.store.stats.duplicates_absorbed += 1
    return JSONResponse(stored.body, status_code=stored.status_code)


def _remember(emu: Emulator, conv: Conversation, scope: str, key: str | None, stored: StoredResponse) -> JSONResponse:
    emu.store.remember(conv, scope, key, stored)
    return JSONResponse(stored.body, status_code=stored.status_code)


def _conversation(emu: Emulator, conversation_id: str) -> Conversation:
    conv = emu.store.get(conversation_id)
    if conv is None:
        raise conversation_not_found(conversation_id)
    return conv


def build_api_router(emu: Emulator) -> APIRouter:
    router = APIRouter(prefix="/digital-connect")

    @router.post("/conversations", status_code=201, response_model=None)
    async def create_conversation(request: Request) -> JSONResponse:
        await emu.faults.apply()
        require_token(emu, request)
        raw = await request.body()
        key = request.headers.get(IDEMPOTENCY_HEADER)
        replay = _replay(emu, "create", key)
        if replay is not None:
            return replay
        data = parse_json_object(raw)
        body = validate(CreateConversation, data)
        if body.touchpoint_id != emu.config.touchpoint_id:
            raise TalkdeskError(
                404,
                TOUCHPOINT_NOT_FOUND,
                "Touchpoint not found",
                f"No touchpoint with id {body.touchpoint_id}.",
                [{"name": "touchpoint_id", "description": "unknown touchpoint"}],
            )
        conv = Conversation(id=new_id(), created_at=now_iso(), request=data, idempotency_key=key)
        conv.record("created", idempotency_key=key, previous_messages=len(body.previous_messages))
        emu.store.conversations[conv.id] = conv
        emu.agent.conversation_created(conv)
        return _remember(emu, conv, "create", key, StoredResponse(201, {"id": conv.id}))

    @router.post("/conversations/{conversation_id}/messages", status_code=201, response_model=None)
    async def send_message(conversation_id: str, request: Request) -> JSONResponse:
        await emu.faults.apply()
        require_token(emu, request)
        raw = await request.body()
        conv = _conversation(emu, conversation_id)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        scope = f"message:{conv.id}"
        replay = _replay(emu, scope, key)
        if replay is not None:
            conv.record("duplicate_absorbed", idempotency_key=key)
            emu.store.save(conv)
            return replay
        body = validate(SendMessage, parse_json_object(raw))
        if conv.status == "ended":
            raise conversation_ended(conv.id)
        message = CustomerMessage(
            seq=conv.next_seq(),
            message_id=new_id(),
            content=body.content,
            attachments=body.attachments,
            created_at=now_iso(),
            idempotency_key=key,
        )
        # The message is what the customer was typing: it ends the typing, so lexdesk need not send a
        # "false" before it (as the agent side works too, typing_lane.py).
        conv.set_customer_typing(False, emu.config.customer_typing_ttl, reason="message")
        conv.customer_messages.append(message)
        conv.record("customer_message", message_id=message.message_id, idempotency_key=key)
        emu.store.stats.messages_received += 1
        emu.agent.customer_message(conv, body.content)
        answer = {"id": conv.id, "created_at": message.created_at, "message_id": message.message_id}
        return _remember(emu, conv, scope, key, StoredResponse(201, answer))

    @router.post("/conversations/{conversation_id}/typing", status_code=202, response_model=None)
    async def customer_typing(conversation_id: str, request: Request) -> JSONResponse:
        """The customer started typing ("true", refreshed while they keep on; it lapses after
        `customer_typing_ttl` without one) or stopped ("false"). Shown to the agent at /console."""
        await emu.faults.apply()
        require_token(emu, request)
        raw = await request.body()
        conv = _conversation(emu, conversation_id)
        body = validate(CustomerTyping, parse_json_object(raw))
        if conv.status == "ended":
            raise conversation_ended(conv.id)
        # Saved only when the record changed: the deadline itself is not written (see Conversation), and
        # a write per refresh would be a state-file write every few seconds per typing customer.
        if conv.set_customer_typing(body.active, emu.config.customer_typing_ttl):
            emu.store.save(conv)
        return JSONResponse({}, status_code=202)

    @router.delete("/conversations/{conversation_id}", status_code=204, response_model=None)
    async def end_conversation(conversation_id: str, request: Request) -> Response:
        await emu.faults.apply()
        require_token(emu, request)
        conv = _conversation(emu, conversation_id)
        if conv.status == "ended":
            raise conversation_ended(conv.id)
        conv.end("customer")
        emu.agent.customer_left(conv)
        emu.store.save(conv)
        return Response(status_code=204)

    return router
