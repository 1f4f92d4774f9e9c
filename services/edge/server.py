"""The customer WebSocket edge (docs/protocol.md §2).

Thin by design: it validates frames, stores the customer's messages as rows (shared/inbound.py: a
socket's frames are handled in order, so the transcript keeps the customer's order; `accepted` means
committed) with the follow-up work published after commit, and writes the frames workers send to
this node's queue to the sockets it holds. Database and broker calls block, so they run in a thread
pool, never on the event loop. Permessage-deflate is off: chat frames are small, and it costs
~64 KiB per connection; without it `lexdesk bench` measures ~21-25 KiB per connection in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import parse_qs

import structlog
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from services.edge import lexwebui, persistence, tokens
from services.edge.node_queue import NodeQueueConsumer
from services.edge.sessions import (
    AddressLimits,
    Admission,
    CustomerSession,
    KeyedRateLimiters,
    RateLimiter,
    SessionRegistry,
    client_key,
    first_exhausted,
)
from shared import handles, inbound
from shared.celery_app import get_celery_app, send_task
from shared.edge_bus import CATCH_UP_DONE, publish_frames
from shared.protocol import (
    CLIENT_FRAMES,
    MAX_JSON_DEPTH,
    Ack,
    CustomerMessage,
    Frame,
    Hello,
    Rating,
    Resume,
    Typing,
    describe_validation_error,
    error_frame,
    json_depth,
)
from shared.settings import Settings
from shared.store import Socket, by_node

log = structlog.get_logger(__name__)
T = TypeVar("T")

NATIVE_PATH = "/ws"
UNAVAILABLE = object()  # what _store returns when the database failed
# How long acknowledgements gather before the node sends them, all sockets' in one task.
ACK_COALESCE_SECONDS = 0.2
# Frames over max_frame_bytes get a `too_large` error and the socket stays open; beyond this hard
# limit the websockets library closes the connection (1009) without buffering the rest.
HARD_LIMIT_FACTOR = 4
# A socket that has not started a conversation (hello or resume) within LEXDESK_HELLO_TIMEOUT is closed
# with this code (like HTTP's 408): idle sockets must not pile up at no cost to whoever opens them.
HELLO_TIMEOUT_CLOSE_CODE = 4408
# The conversation was opened in more sockets than LEXDESK_MAX_SOCKETS_PER_CONVERSATION and this is the
# oldest: the client is told (native: this error frame) and the socket is closed with this code. The chat
# page does not reconnect on it, or its tabs would push each other out for ever.
SUPERSEDED_CLOSE_CODE = 4409
SUPERSEDED = error_frame("superseded", "this conversation was opened in more windows than it may be shown in "
                         "at once; this one, the oldest, is closed")
# A resumed socket whose catch-up has not come within this many seconds (the routing queue is down, its
# publish was lost), or that has held back this many live frames waiting for it, is closed with 1013 (try
# again later): the client's next resume catches up, where waiting on would show nothing, or run out of memory.
CATCH_UP_TIMEOUT_SECONDS = 60.0
MAX_HELD_FRAMES = 2000
# A customer's typing that reaches a worker later than this is worth nothing and is dropped unrun.
TYPING_EXPIRES_SECONDS = 5.0
# What the events a socket is written say about whether an agent has the chat (customer typing goes on
# to the agent only then).
AGENT_PRESENCE = {"agent_joined": True, "agent_queued": False, "handoff_failed": False, "conversation_ended": False}


class EdgeServer:
    def __init__(self, settings: Settings) -> None:
        settings.require("resume_token_secret", "data_key")
        assert settings.resume_token_secret is not None
        self.settings = settings
        self.node_id = settings.node_id
        self._secret = settings.resume_token_secret.get_secret_value().encode()
        self._handle_secret = settings.resume_token_secret.get_secret_value()  # shared/handles.py
        self.registry = SessionRegistry()
        # Limits beyond the socket's own (docs/protocol.md §2), in memory and per node (sessions.py): a
        # conversation's count is this node's, which is enough to stop many sockets multiplying it.
        self.address_limits = AddressLimits(
            settings.address_max_sockets, settings.address_max_unstarted_sockets, settings.address_new_sockets,
            settings.address_new_sockets_window, settings.address_new_conversations,
            settings.address_new_conversations_window)
        self.conversation_messages = KeyedRateLimiters(settings.rate_limit_conversation_messages,
                                                       settings.rate_limit_window)
        self.address_messages = KeyedRateLimiters(settings.rate_limit_address_messages, settings.rate_limit_window)
        self._admissions: dict[ServerConnection, Admission] = {}
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="edge-io")
        self._consumer: NodeQueueConsumer | None = None
        self._pending_acks: dict[str, int] = {}  # conversation id -> highest seq acknowledged, not yet sent
        self._ack_flush: asyncio.Task[None] | None = None
        self.port: int | None = None

    # -- running ------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Future[None], started: Callable[[int], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        await self._io(persistence.forget_node, self.settings.database_url, self.node_id)
        transport_options = dict(get_celery_app().conf.broker_transport_options or {})
        self._consumer = NodeQueueConsumer(self.settings.broker_url, self.node_id, loop, self._on_envelope,
                                           transport_options)
        self._consumer.start()
        # Accept no socket before the node queue exists: a frame routed to a missing queue is dropped.
        if not await self._io(self._consumer.ready.wait, 60):
            raise RuntimeError(f"edge {self.node_id}: could not consume its queue on the broker within 60s")
        try:
            async with serve(
                self._handle, self.settings.edge_host, self.settings.edge_port,
                max_size=self.settings.max_frame_bytes * HARD_LIMIT_FACTOR, compression=None,
                process_request=self._check_path, ping_interval=20, ping_timeout=20,
            ) as server:
                self.port = _bound_port(server)
                log.info("edge_listening", node_id=self.node_id, port=self.port)
                if started:
                    started(self.port)
                await stop
        finally:
            await self._io(self._consumer.stop)
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] not in (NATIVE_PATH, lexwebui.PATH):
            return connection.respond(HTTPStatus.NOT_FOUND,
                                      f"no WebSocket endpoint at {request.path}; use /ws (or /talkdesk)\n")
        # Per-address socket limits, at the upgrade: a refused socket costs a few bytes of HTTP, no session.
        admission = self.address_limits.admit(self._client_address(connection, request))
        if isinstance(admission, str):
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, f"{admission}; try again later\n")
        # Counted until the TCP connection is gone, however it goes: the handler may never run (the
        # handshake can still fail after this hook), so the release hangs on the connection itself.
        self._admissions[connection] = admission
        connection.connection_lost_waiter.add_done_callback(lambda _: self._release(connection))
        return None

    def _release(self, connection: ServerConnection) -> None:
        admission = self._admissions.pop(connection, None)
        if admission is not None:
            self.address_limits.release(admission)

    def _client_address(self, connection: ServerConnection, request: Request) -> str:
        if self.settings.trust_forwarded_for:
            # The last entry is the one the proxy in front of us added (the peer it saw); anything before
            # it came from the client and proves nothing. Cut short: it becomes a key in memory.
            entries = [entry.strip() for value in request.headers.get_all("X-Forwarded-For")
                       for entry in value.split(",") if entry.strip()]
            if entries:
                return client_key(entries[-1][:64])
        peer = connection.remote_address
        return client_key(str(peer[0])) if peer else "unknown"

    # -- frames from workers --------------------------------------------------------------------------

    def _on_envelope(self, envelope: dict[str, Any]) -> None:
        ids = envelope.get("connection_ids")
        if not isinstance(ids, list):
            ids = [envelope.get("connection_id")]  # from a worker of the one-socket version
        frames, catch_up = envelope.get("frames", []), envelope.get("catch_up")
        for connection_id in ids:
            session = self.registry.get(str(connection_id))
            if session is None or session.conversation_id != envelope.get("conversation_id"):
                continue  # the socket is gone; the frames stay unacknowledged and go out again on resume
            if catch_up is None and session.catching_up:
                session.held.extend(frames)
                if len(session.held) > MAX_HELD_FRAMES:
                    self._catch_up_failed(session)
                continue
            for frame in frames:
                session.outbound.put_nowait(frame)
            if catch_up == CATCH_UP_DONE and session.catching_up:
                self._caught_up(session)

    def _caught_up(self, session: CustomerSession) -> None:
        held = session.held
        self._stop_catching_up(session)
        for frame in held:
            session.outbound.put_nowait(frame)

    def _catch_up_failed(self, session: CustomerSession) -> None:
        session.catch_up_timer = None
        if not session.catching_up:
            return
        log.warning("edge_catch_up_missing", conversation_id=session.conversation_id, held=len(session.held))
        session.catching_up, session.held = False, []
        session.closer = asyncio.create_task(session.websocket.close(1013, "could not catch up; resume again"))

    def _stop_catching_up(self, session: CustomerSession) -> None:
        session.catching_up, session.held = False, []
        if session.catch_up_timer is not None:
            session.catch_up_timer.cancel()
            session.catch_up_timer = None

    def _await_catch_up(self, session: CustomerSession) -> None:
        session.catching_up = True
        session.catch_up_timer = asyncio.get_running_loop().call_later(
            CATCH_UP_TIMEOUT_SECONDS, self._catch_up_failed, session)

    async def _write_frames(self, session: CustomerSession) -> None:
        while True:
            frame = await session.outbound.get()
            if frame == SUPERSEDED:
                await self._send(session, frame)
                session.closed = True
                await session.websocket.close(SUPERSEDED_CLOSE_CODE, "opened in too many windows")
                return
            seq = frame.get("seq")
            if isinstance(seq, int) and seq <= session.written_seq:
                continue  # shown on this socket already: a catch-up overlapping live frames, a resend
            if frame.get("type") in ("echo", "tabs") and not session.echo:
                continue  # the client did not ask for the other tabs' lines
            if session.dialect == "lexwebui":
                translated = lexwebui.server_frame(frame)
                if translated is not None:
                    await session.websocket.send(json.dumps(translated))
                # The Lex Web UI never acknowledges: what was written (or has no words in its dialect)
                # counts as shown, or the sweep would send it again.
                if isinstance(frame.get("seq"), int) and session.conversation_id is not None:
                    self._queue_ack(session.conversation_id, frame["seq"])
            else:
                await session.websocket.send(json.dumps(frame))
            if isinstance(frame.get("seq"), int):
                session.written_seq = max(session.written_seq, frame["seq"])
            if frame.get("type") == "event" and frame.get("event") in AGENT_PRESENCE:
                session.agent_active = AGENT_PRESENCE[frame["event"]]
            if frame.get("type") == "event" and frame.get("event") in ("conversation_ended", "rated"):
                # A rating (asked for when the agent ends the chat) comes on a socket resumed for it.
                session.closed = True
                await session.websocket.close(1000, "conversation ended")
                return

    # -- one customer socket --------------------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        path, _, query = websocket.request.path.partition("?") if websocket.request else ("", "", "")
        dialect = "lexwebui" if path == lexwebui.PATH else "native"
        limits = RateLimiter(self.settings.rate_limit_messages, self.settings.rate_limit_window)
        session = CustomerSession(connection_id=uuid.uuid4().hex, websocket=websocket, dialect=dialect,
                                  limiter=limits)
        session.admission = self._admissions.get(websocket)
        session.address = session.admission.address if session.admission else "unknown"
        self.registry.add(session)
        session.hello_timer = asyncio.get_running_loop().call_later(self.settings.hello_timeout,
                                                                    self._hello_overdue, session)
        writer: asyncio.Task[None] | None = None
        try:
            if dialect == "lexwebui":
                if not await self._attach_lexwebui(session, query):
                    return
                self._started(session)
                writer = asyncio.create_task(self._write_frames(session))
            async for raw in websocket:
                if dialect == "lexwebui":
                    await self._on_lexwebui_frame(session, raw)
                    continue
                started = await self._on_frame(session, raw)
                if started and writer is None:
                    # Frames for this socket queue up until `welcome` has gone out, then flow.
                    writer = asyncio.create_task(self._write_frames(session))
        except ConnectionClosed:
            pass
        finally:
            if session.hello_timer is not None:
                session.hello_timer.cancel()
            self._stop_catching_up(session)
            if dialect == "lexwebui" and websocket.close_code == lexwebui.END_CLOSE_CODE:
                # The Lex Web UI ends a live chat by closing with 4000.
                await self._store(session, None, inbound.customer_ended, self.settings, session.conversation_id)
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await writer
            self.registry.remove(session.connection_id)
            if session.conversation_id is not None:
                remaining = await self._io(persistence.detach, self.settings.database_url, session.connection_id,
                                           session.conversation_id)
                if remaining:
                    await self._tell_tabs(session.conversation_id, remaining, len(remaining))

    async def _attach_lexwebui(self, session: CustomerSession, query: str) -> bool:
        handle = (parse_qs(query).get("conversationId") or [""])[0]
        if not handle:
            await session.websocket.close(1008, "conversationId (talkdesk_conversation_id from the bot) is required")
            return False
        # Only a handle lexdesk signed (its code hook answered it to Lex) names a conversation: whoever
        # merely knows an id, ours or Talkdesk's, gets nothing, and no row is written for them.
        conversation_id = handles.verify(self._handle_secret, handle)
        attached = None
        if conversation_id is not None:
            self._await_catch_up(session)
            attached = await self._store(session, None, persistence.attach, self.settings.database_url,
                                         conversation_id, session.connection_id, self.node_id, "lexwebui",
                                         self.settings.closed_resume_grace, self.settings.max_sockets_per_conversation)
            if attached is UNAVAILABLE:
                await session.websocket.close(1013, "try again later")
                return False
        if attached is None:
            log.warning("lexwebui_refused", reason="unsigned or unknown conversationId")
            await session.websocket.close(lexwebui.REFUSED_CLOSE_CODE, "conversationId was not issued by lexdesk")
            return False
        session.conversation_id = attached.conversation_id
        session.closed = attached.state == "closed"
        await self._tell_superseded(attached)
        await self._tell_tabs(attached.conversation_id, attached.others, len(attached.others) + 1)
        # Everything the Lex Web UI has not been written yet (what was written to it counts as shown).
        await self._publish_or_error(session, "routing.customer_resumed", None,
                                     conversation_id=attached.conversation_id, last_seq=attached.acked_frame_seq,
                                     connection_id=session.connection_id)
        return True

    async def _tell_superseded(self, attached: persistence.Attached) -> None:
        """The conversation's oldest sockets beyond LEXDESK_MAX_SOCKETS_PER_CONVERSATION are told they were
        replaced and closed (by the node that holds them), never left open and silently starved."""
        for socket in attached.superseded:
            try:
                await self._io(publish_frames, socket.node_id, attached.conversation_id, [socket.connection_id],
                               [SUPERSEDED])
            except Exception as exc:  # the old node may be gone: its socket is gone with it
                log.warning("supersede_notice_failed", conversation_id=attached.conversation_id,
                            node_id=socket.node_id, error=repr(exc))

    async def _tell_tabs(self, conversation_id: str, sockets: Sequence[Socket], open_in: int) -> None:
        """How many sockets the conversation is open in now, for those of its tabs that show it (native
        sockets that asked for `echo`): a customer sees "open in 2 windows" when someone else opens their
        chat with a leaked token, where the one-socket version told them by taking it over. Best effort."""
        for node_id, connection_ids in by_node(s for s in sockets if s.dialect == "native").items():
            try:
                await self._io(publish_frames, node_id, conversation_id, connection_ids,
                               [{"type": "tabs", "open": open_in}])
            except Exception as exc:
                log.warning("tabs_notice_failed", conversation_id=conversation_id, node_id=node_id, error=repr(exc))

    async def _on_lexwebui_frame(self, session: CustomerSession, raw: str | bytes) -> None:
        text = lexwebui.customer_text(raw)
        if text is None or len(text.encode()) > self.settings.max_frame_bytes:
            log.info("lexwebui_frame_ignored", conversation_id=session.conversation_id)
            return  # the dialect has no error frames
        if self._message_limit(session) is not None:
            log.warning("lexwebui_rate_limited", conversation_id=session.conversation_id)
            return
        await self._store(session, None, inbound.customer_message, self.settings, session.conversation_id,
                          uuid.uuid4().hex, text, session.connection_id)

    async def _send(self, session: CustomerSession, frame: dict[str, Any]) -> None:
        if session.dialect != "native":
            return  # the Lex Web UI's dialect has no frames for errors and acknowledgements
        with contextlib.suppress(ConnectionClosed):
            await session.websocket.send(json.dumps(frame))

    async def _on_frame(self, session: CustomerSession, raw: str | bytes) -> bool:
        """Handle one client frame; True once the session has sent its `welcome`."""
        if isinstance(raw, bytes):
            await self._send(session, error_frame("bad_frame", "binary frames are not supported; send JSON text"))
            return False
        if len(raw.encode()) > self.settings.max_frame_bytes:
            await self._send(session, error_frame(
                "too_large", f"frame of {len(raw.encode())} bytes exceeds {self.settings.max_frame_bytes}"))
            return False
        if json_depth(raw) > MAX_JSON_DEPTH:
            await self._send(session, error_frame("bad_frame", f"JSON nested deeper than {MAX_JSON_DEPTH} levels"))
            return False
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: '[' * 2000
            await self._send(session, error_frame("bad_frame", f"not valid JSON: {str(exc)[:200]}"))
            return False
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self._send(session, error_frame("bad_frame", "a frame is a JSON object with a string 'type'"))
            return False
        model = CLIENT_FRAMES.get(data["type"])
        frame_id = data.get("id") if isinstance(data.get("id"), str) else None
        if model is None:
            await self._send(session, error_frame("unknown_type", f"unknown frame type {data['type']!r}", frame_id))
            return False
        try:
            frame = model.model_validate(data)
        except ValidationError as exc:
            await self._send(session, error_frame("bad_frame", describe_validation_error(exc), frame_id))
            return False
        return await self._dispatch(session, frame)

    async def _dispatch(self, session: CustomerSession, frame: Frame) -> bool:
        match frame:
            case Hello() | Resume() if session.conversation_id is not None:
                await self._send(session, error_frame("bad_frame", "this socket already has a conversation"))
                return True
            case Hello() | Resume():
                return await self._start(session, frame)
        if frame.type == "ping":
            await self._send(session, {"type": "pong"})
            return session.conversation_id is not None
        if session.conversation_id is None:
            await self._send(session, error_frame("not_started", "send hello or resume first",
                                                  getattr(frame, "id", None)))
            return False
        match frame:
            case CustomerMessage():
                await self._message(session, frame)
            case Ack():
                await self._ack(session, frame)
            case _ if frame.type == "end":
                await self._end(session)
            case Rating():
                await self._rate(session, frame)
            case Typing():
                await self._typing(session, frame)
        return True

    async def _typing(self, session: CustomerSession, typing: Typing) -> None:
        """Best effort, and answered with nothing either way (docs/protocol.md §2): on to the agent while
        one has the chat, if the Talkdesk in use has a call for it (LEXDESK_FORWARD_CUSTOMER_TYPING)."""
        if not self.settings.forward_customer_typing or not session.agent_active or session.closed:
            return
        if not session.typing.forward(typing.active, time.monotonic()):
            return
        try:
            await self._io(send_task, "talkdesk.customer_typing", expires=TYPING_EXPIRES_SECONDS,
                           conversation_id=session.conversation_id, active=typing.active)
        except Exception as exc:
            log.warning("customer_typing_publish_failed", conversation_id=session.conversation_id, error=repr(exc))

    async def _start(self, session: CustomerSession, frame: Hello | Resume) -> bool:
        """hello or resume. A new conversation counts against the address's allowance first (a resume
        is bounded by the sockets the address may open); while the frame is being stored the hello
        timeout waits for it; once it has succeeded the socket no longer counts as unstarted."""
        if isinstance(frame, Hello) and not self.address_limits.allow_conversation(session.address):
            await self._send(session, error_frame(
                "rate_limited", f"more than {self.settings.address_new_conversations} new conversations in "
                f"{self.settings.address_new_conversations_window:g}s from your address; try again later"))
            return False
        session.starting = True
        try:
            started = await (self._hello(session, frame) if isinstance(frame, Hello)
                             else self._resume(session, frame))
        finally:
            session.starting = False
        if session.conversation_id is not None:
            self._started(session)
        return started

    def _started(self, session: CustomerSession) -> None:
        if session.hello_timer is not None:
            session.hello_timer.cancel()  # started in time: the timer has nothing left to do
            session.hello_timer = None
        if session.admission is not None:
            self.address_limits.start(session.admission)

    def _hello_overdue(self, session: CustomerSession) -> None:
        """LEXDESK_HELLO_TIMEOUT has passed: a socket without a conversation is closed (4408), unless
        its hello or resume is being stored right now, which it is given time to finish."""
        session.hello_timer = None
        if session.conversation_id is not None or session.hello_closer is not None:
            return
        if session.starting:
            session.hello_timer = asyncio.get_running_loop().call_later(1.0, self._hello_overdue, session)
            return
        session.hello_closer = asyncio.create_task(session.websocket.close(
            HELLO_TIMEOUT_CLOSE_CODE, f"no hello or resume within {self.settings.hello_timeout:g}s"))

    async def _rate(self, session: CustomerSession, rating: Rating) -> None:
        outcome = await self._store(session, None, inbound.customer_rated, self.settings, session.conversation_id,
                                    rating.score, rating.comment)
        if outcome == inbound.Outcome.IGNORED:
            await self._send(session, error_frame("bad_frame", "nothing to rate: only a chat an agent ended is rated"))
        # STORED: the `rated` event follows (and the socket is closed after it); DUPLICATE: rated before.

    async def _end(self, session: CustomerSession) -> None:
        if session.closed:
            # Known to be over (the welcome said so, or an earlier `end`): answered from memory. A write
            # transaction for each one would let a socket spamming `end` slow every customer's writes.
            await self._send(session, error_frame("conversation_closed", "this conversation has ended"))
            return
        outcome = await self._store(session, None, inbound.customer_ended, self.settings, session.conversation_id)
        if outcome in (inbound.Outcome.STORED, inbound.Outcome.CLOSED):
            session.closed = True  # ended now (its `conversation_ended` event follows) or before
        if outcome == inbound.Outcome.CLOSED:
            await self._send(session, error_frame("conversation_closed", "this conversation has ended"))

    def _message_limit(self, session: CustomerSession) -> str | None:
        """None if a customer message may pass now (it takes a token from each limit), else the limit it
        hit: this socket's, its conversation's over all its sockets, or its address's over all its
        sockets. Checked in memory before any database work, so a flood costs nobody else a write."""
        limiters = [session.limiter, self.address_messages.get(session.address)]
        if session.conversation_id is not None:
            limiters.insert(1, self.conversation_messages.get(session.conversation_id))
        exhausted = first_exhausted(limiters)
        if exhausted is None:
            return None
        window = f"{self.settings.rate_limit_window:g}s"
        if exhausted == 0:
            return f"{self.settings.rate_limit_messages} messages in {window} on this socket"
        if exhausted == len(limiters) - 1:
            return f"{self.settings.rate_limit_address_messages} messages in {window} from your address"
        return f"{self.settings.rate_limit_conversation_messages} messages in {window} in this conversation"

    async def _hello(self, session: CustomerSession, hello: Hello) -> bool:
        session.echo = hello.echo
        attached = await self._store(session, None, persistence.open_conversation, self.settings.database_url,
                                     hello, session.connection_id, self.node_id)
        return attached is not UNAVAILABLE and await self._welcome(session, attached)

    async def _resume(self, session: CustomerSession, resume: Resume) -> bool:
        conversation_id = tokens.verify(self._secret, resume.resume_token)
        attached = None
        if conversation_id is not None:
            # Live frames can reach this socket once it is attached: they wait for its catch-up.
            self._await_catch_up(session)
            # A conversation closed longer ago than the grace period is as unknown as a forged token.
            attached = await self._store(session, None, persistence.attach, self.settings.database_url,
                                         conversation_id, session.connection_id, self.node_id, "native",
                                         self.settings.closed_resume_grace, self.settings.max_sockets_per_conversation)
            if attached is UNAVAILABLE:
                self._stop_catching_up(session)
                return False  # the client was told; it may try again
        if attached is None:
            self._stop_catching_up(session)
            await self._send(session, error_frame("invalid_token", "resume token is not valid"))
            return False
        await self._tell_superseded(attached)
        await self._tell_tabs(attached.conversation_id, attached.others, len(attached.others) + 1)
        session.echo = resume.echo
        await self._welcome(session, attached)
        session.written_seq = min(resume.last_seq, attached.last_frame_seq)  # shown on an earlier socket
        # Frames after last_seq come from a worker, to this socket alone, after this welcome, in order.
        await self._publish_or_error(session, "routing.customer_resumed", None,
                                     conversation_id=attached.conversation_id, last_seq=resume.last_seq,
                                     connection_id=session.connection_id, echo=resume.echo)
        return True

    async def _welcome(self, session: CustomerSession, attached: persistence.Attached) -> bool:
        session.conversation_id = attached.conversation_id
        session.closed = attached.state == "closed"
        session.agent_active = attached.state == "agent_active"
        await self._send(session, {
            "type": "welcome",
            "conversation_id": attached.conversation_id,
            "resume_token": tokens.issue(self._secret, attached.conversation_id, self.settings.resume_token_ttl),
            "state": attached.state,
            "last_seq": attached.last_frame_seq,
            "node_id": self.node_id,
            "tabs": len(attached.others) + 1,  # extension: the sockets the conversation is open in
        })
        return True

    async def _message(self, session: CustomerSession, message: CustomerMessage) -> None:
        if session.closed:
            await self._send(session, error_frame("conversation_closed", "this conversation has ended", message.id))
            return
        limit = self._message_limit(session)
        if limit is not None:
            await self._send(session, error_frame("rate_limited", f"more than {limit}; resend this one later",
                                                  message.id))
            return
        outcome = await self._store(session, message.id, inbound.customer_message, self.settings,
                                    session.conversation_id, message.id, message.text, session.connection_id)
        if outcome in (inbound.Outcome.STORED, inbound.Outcome.DUPLICATE):
            session.typing.active = False  # a message ends the typing: the next keystroke is news again
            await self._send(session, {"type": "accepted", "id": message.id})
        elif outcome == inbound.Outcome.CLOSED:
            session.closed = True
            await self._send(session, error_frame("conversation_closed", "this conversation has ended", message.id))
        elif outcome == inbound.Outcome.TOO_LONG:
            await self._send(session, error_frame(
                "too_large", f"the assistant takes messages of at most {inbound.LEX_MAX_TEXT} characters; this one "
                f"has {len(message.text)}: send it in parts", message.id))

    async def _ack(self, session: CustomerSession, ack: Ack) -> None:
        # Cumulative, and never beyond what this socket was sent: an ack for frames not shown yet would
        # mark them delivered and they would never be shown.
        seq = min(ack.seq, session.written_seq)
        if seq <= session.acked_seq:
            return
        session.acked_seq = seq
        assert session.conversation_id is not None
        self._queue_ack(session.conversation_id, seq)

    def _queue_ack(self, conversation_id: str, seq: int) -> None:
        """Acknowledgements are batched per node (Zulip's batch consumer is the model): every socket's
        highest ack of the interval goes out in one `routing.customer_acks` task, applied in one
        transaction, instead of a task and a transaction per socket."""
        self._pending_acks[conversation_id] = max(seq, self._pending_acks.get(conversation_id, 0))
        if self._ack_flush is None or self._ack_flush.done():
            self._ack_flush = asyncio.create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        # One task at a time (see _queue_ack); it goes on while acks keep coming in.
        while True:
            await asyncio.sleep(ACK_COALESCE_SECONDS)
            batch, self._pending_acks = self._pending_acks, {}
            try:
                await self._io(send_task, "routing.customer_acks", acks=sorted([c, s] for c, s in batch.items()))
            except Exception as exc:
                # Cumulative: kept for the next flush. (An ack that never arrives only means its frames
                # are shown again on resume, where the client drops what it has.)
                log.error("edge_ack_publish_failed", acks=len(batch), error=repr(exc))
                for conversation_id, seq in batch.items():
                    self._pending_acks[conversation_id] = max(seq, self._pending_acks.get(conversation_id, 0))
            if not self._pending_acks:
                return

    async def _store(self, session: CustomerSession, frame_id: str | None, operation: Callable[..., T],
                     *args: Any) -> Any:
        """Run a database operation; if the database fails, tell the client (`unavailable`: send it
        again) and return UNAVAILABLE. The socket stays open either way."""
        try:
            return await self._io(operation, *args)
        except Exception as exc:
            log.error("edge_store_failed", operation=operation.__name__, conversation_id=session.conversation_id,
                      error=repr(exc))
            await self._send(session, error_frame("unavailable", "could not store that; send it again", frame_id))
            return UNAVAILABLE

    async def _publish_or_error(self, session: CustomerSession, task: str, frame_id: str | None,
                                **kwargs: Any) -> bool:
        try:
            await self._io(send_task, task, **kwargs)
            return True
        except Exception as exc:
            log.error("edge_publish_failed", task=task, conversation_id=session.conversation_id, error=repr(exc))
            await self._send(session, error_frame("unavailable", "could not store that; send it again", frame_id))
            return False


def _bound_port(server: Server) -> int:
    for sock in server.sockets:
        return int(sock.getsockname()[1])
    raise RuntimeError("edge server has no listening socket")


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM."""
    import signal

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
        await EdgeServer(settings).run(stop)

    asyncio.run(main())
