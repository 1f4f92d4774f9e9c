"""Emulator-only routes under /_emulator (no auth): inspect state, change faults, act as a person agent
(take a conversation, type, reply, close), forget a conversation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from .context import Emulator
from .errors import (
    AGENT_NOT_JOINED,
    CONVERSATION_CLOSING,
    CONVERSATION_ENDED,
    TalkdeskError,
    conversation_ended,
    conversation_not_found,
)
from .faults import FaultUpdate
from .state import Conversation

AgentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class AgentMessageIn(BaseModel):
    content: str = Field(min_length=1)
    agent_name: AgentName | None = None
    """Who the person is, should this message be what takes the conversation (see TakeIn)."""


class TakeIn(BaseModel):
    agent_name: AgentName | None = None
    """The person's name, sent to lexdesk as the agent who joined if nobody has yet; default "Agent"."""


class TypingIn(BaseModel):
    active: bool


def build_admin_router(emu: Emulator) -> APIRouter:
    router = APIRouter()

    def conversation(conversation_id: str) -> Conversation:
        conv = emu.store.get(conversation_id)
        if conv is None:
            raise conversation_not_found(conversation_id)
        return conv

    def writable(conversation_id: str) -> Conversation:
        conv = conversation(conversation_id)
        if conv.status == "ended":
            raise conversation_ended(conv.id)
        if conv.closing:
            raise TalkdeskError(400, CONVERSATION_CLOSING, "Conversation is closing", "The agent is closing it.")
        return conv

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/_emulator/conversations")
    async def list_conversations() -> list[dict[str, Any]]:
        return [conv.summary() for conv in emu.store.conversations.values()]

    @router.get("/_emulator/conversations/{conversation_id}")
    async def get_conversation(conversation_id: str) -> dict[str, Any]:
        return conversation(conversation_id).to_dict()

    @router.get("/_emulator/stats")
    async def stats() -> dict[str, Any]:
        return emu.store.stats_dict()

    @router.get("/_emulator/faults")
    async def get_faults() -> dict[str, Any]:
        return emu.faults.settings.model_dump()

    @router.put("/_emulator/faults")
    async def put_faults(change: FaultUpdate) -> dict[str, Any]:
        return emu.faults.update(change).model_dump()

    @router.post("/_emulator/conversations/{conversation_id}/agent-messages", status_code=202)
    async def agent_message(conversation_id: str, body: AgentMessageIn) -> dict[str, Any]:
        conv = writable(conversation_id)
        message = emu.agent.console_message(conv, body.content, body.agent_name)
        emu.store.save(conv)
        return message.to_dict()

    @router.post("/_emulator/conversations/{conversation_id}/close", status_code=202)
    async def close(conversation_id: str) -> JSONResponse:
        conv = writable(conversation_id)
        emu.agent.console_close(conv)
        emu.store.save(conv)
        return JSONResponse(conv.summary(), status_code=202)

    @router.post("/_emulator/conversations/{conversation_id}/take")
    async def take(conversation_id: str, body: TakeIn | None = None) -> dict[str, Any]:
        conv = conversation(conversation_id)
        emu.agent.take_over(conv, body.agent_name if body else None)
        emu.store.save(conv)
        return conv.summary()

    @router.post("/_emulator/conversations/{conversation_id}/typing", status_code=202)
    async def typing(conversation_id: str, body: TypingIn) -> dict[str, Any]:
        """The console's typing indicator, forwarded to lexdesk. 409 when there is nobody to be typing:
        the conversation has ended or is closing, or nobody has joined it (take it first)."""
        conv = conversation(conversation_id)
        if conv.status == "ended":
            raise TalkdeskError(409, CONVERSATION_ENDED, "Conversation has already ended", f"{conv.id} has ended.")
        if conv.closing:
            raise TalkdeskError(409, CONVERSATION_CLOSING, "Conversation is closing", "The agent is closing it.")
        if conv.agent_name is None:
            raise TalkdeskError(409, AGENT_NOT_JOINED, "No agent has joined", "Take the conversation first.")
        emu.agent.console_typing(conv, body.active)
        emu.store.save(conv)
        return {"id": conv.id, "active": body.active}

    @router.post("/_emulator/conversations/{conversation_id}/forget")
    async def forget(conversation_id: str) -> dict[str, str]:
        """As when Talkdesk expires or removes a conversation: afterwards every route answers for it what
        it answers for an id that never existed, the agent stops, and a state file forgets it too."""
        conv = emu.store.forget(conversation_id)
        if conv is None:
            raise conversation_not_found(conversation_id)
        emu.agent.forget(conv.id)
        return {"forgotten": conv.id}

    return router
