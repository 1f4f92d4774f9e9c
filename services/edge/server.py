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
import uuid
from collections.abc import Callable
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
from services.edge.sessions import CustomerSession, RateLimiter, SessionRegistry
from shared import inbound
from shared.celery_app import get_celery_app, send_task
from shared.protocol import (
    CLIENT_FRAMES,
    Ack,
    CustomerMessage,
    Frame,
    Hello,
    Resume,
    describe_validation_error,
    error_frame,
)
from shared.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

NATIVE_PATH = "/ws"
UNAVAILABLE = object()
ACK_COALESCE_SECONDS = 0.2  # what _store returns when the database failed
# Frames over max_frame_bytes get a `too_large` error and the socket stays open; beyond this hard
# limit the websockets library closes the connection (1009) without buffering the rest.
HARD_LIMIT_FACTOR = 4


class EdgeServer:
    def __init__(self, settings: Settings) -> None:
        settings.require("resume_token_secret", "data_key")
        assert settings.resume_token_secret is not None
        self.settings = settings
        self.node_id = settings.node_id
        self._secret = settings.resume_token_secret.get_secret_value().encode()
        self.registry = SessionRegistry()
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="edge-io")
        self._consumer: NodeQueueConsumer | None = None
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
        return None

    # -- frames from workers --------------------------------------------------------------------------

    def _on_envelope(self, envelope: dict[str, Any]) -> None:
        session = self.registry.get(str(envelope.get("connection_id")))
        if session is None or session.conversation_id != envelope.get("conversation_id"):
            return  # the socket is gone; the frames stay unacknowledged and go out again on resume
        for frame in envelope.get("frames", []):
            session.outbound.put_nowait(frame)

    async def _write_frames(self, session: CustomerSession) -> None:
        while True:
            frame = await session.outbound.get()
            if session.dialect == "lexwebui":
                translated = lexwebui.server_frame(frame)
                if translated is not None:
                    await session.websocket.send(json.dumps(translated))
                # The Lex Web UI never acknowledges: what was written (or has no words in its dialect)
                # counts as shown, or the sweep would send it again.
                if isinstance(frame.get("seq"), int):
                    await self._publish_or_error(session, "routing.customer_ack", None,
                                                 conversation_id=session.conversation_id, seq=frame["seq"])
            else:
                await session.websocket.send(json.dumps(frame))
            if isinstance(frame.get("seq"), int):
                session.written_seq = max(session.written_seq, frame["seq"])
            if frame.get("type") == "event" and frame.get("event") == "conversation_ended":
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
        self.registry.add(session)
        writer: asyncio.Task[None] | None = None
        try:
            if dialect == "lexwebui":
                if not await self._attach_lexwebui(session, query):
                    return
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
            if dialect == "lexwebui" and websocket.close_code == lexwebui.END_CLOSE_CODE:
                # The Lex Web UI ends a live chat by closing with 4000.
                await self._store(session, None, inbound.customer_ended, self.settings, session.conversation_id)
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await writer
            self.registry.remove(session.connection_id)
            if session.conversation_id is not None:
                await self._io(persistence.detach, self.settings.database_url, session.connection_id)

    async def _attach_lexwebui(self, session: CustomerSession, query: str) -> bool:
        talkdesk_id = (parse_qs(query).get("conversationId") or [""])[0]
        if not talkdesk_id or len(talkdesk_id) > 100:
            await session.websocket.close(1008, "conversationId (the Talkdesk conversation id) is required")
            return False
        attached = await self._store(session, None, persistence.adopt_talkdesk_conversation,
                                     self.settings.database_url, talkdesk_id, session.connection_id, self.node_id)
        if attached is UNAVAILABLE:
            await session.websocket.close(1013, "try again later")
            return False
        session.conversation_id = attached.conversation_id
        # From now on only: the Lex Web UI has shown the conversation so far itself.
        await self._publish_or_error(session, "routing.customer_resumed", None,
                                     conversation_id=attached.conversation_id, last_seq=attached.last_frame_seq)
        return True

    async def _on_lexwebui_frame(self, session: CustomerSession, raw: str | bytes) -> None:
        text = lexwebui.customer_text(raw)
        if text is None or len(text.encode()) > self.settings.max_frame_bytes:
            log.info("lexwebui_frame_ignored", conversation_id=session.conversation_id)
            return  # the dialect has no error frames
        if not session.limiter.allow():
            log.warning("lexwebui_rate_limited", conversation_id=session.conversation_id)
            return
        await self._store(session, None, inbound.customer_message, self.settings, session.conversation_id,
                          uuid.uuid4().hex, text)

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
            case Hello():
                return await self._hello(session, frame)
            case Resume():
                return await self._resume(session, frame)
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
                await self._store(session, None, inbound.customer_ended, self.settings, session.conversation_id)
            case _:
                pass  # typing: Digital Connect has no typing indicator to forward it to
        return True

    async def _hello(self, session: CustomerSession, hello: Hello) -> bool:
        attached = await self._store(session, None, persistence.open_conversation, self.settings.database_url,
                                     hello, session.connection_id, self.node_id)
        return attached is not UNAVAILABLE and await self._welcome(session, attached)

    async def _resume(self, session: CustomerSession, resume: Resume) -> bool:
        conversation_id = tokens.verify(self._secret, resume.resume_token)
        attached = None
        if conversation_id is not None:
            attached = await self._store(session, None, persistence.attach, self.settings.database_url,
                                         conversation_id, session.connection_id, self.node_id)
            if attached is UNAVAILABLE:
                return False  # the client was told; it may try again
        if attached is None:
            await self._send(session, error_frame("invalid_token", "resume token is not valid"))
            return False
        await self._welcome(session, attached)
        session.written_seq = min(resume.last_seq, attached.last_frame_seq)  # shown on an earlier socket
        # Frames after last_seq are sent again by a worker, after this welcome, in order.
        await self._publish_or_error(session, "routing.customer_resumed", None,
                                     conversation_id=attached.conversation_id, last_seq=resume.last_seq)
        return True

    async def _welcome(self, session: CustomerSession, attached: persistence.Attached) -> bool:
        session.conversation_id = attached.conversation_id
        session.closed = attached.state == "closed"
        await self._send(session, {
            "type": "welcome",
            "conversation_id": attached.conversation_id,
            "resume_token": tokens.issue(self._secret, attached.conversation_id),
            "state": attached.state,
            "last_seq": attached.last_frame_seq,
            "node_id": self.node_id,
        })
        return True

    async def _message(self, session: CustomerSession, message: CustomerMessage) -> None:
        if session.closed:
            await self._send(session, error_frame("conversation_closed", "this conversation has ended", message.id))
            return
        if not session.limiter.allow():
            await self._send(session, error_frame(
                "rate_limited",
                f"more than {self.settings.rate_limit_messages} messages in {self.settings.rate_limit_window:g}s; "
                "resend this one later", message.id))
            return
        outcome = await self._store(session, message.id, inbound.customer_message, self.settings,
                                    session.conversation_id, message.id, message.text)
        if outcome in (inbound.Outcome.STORED, inbound.Outcome.DUPLICATE):
            await self._send(session, {"type": "accepted", "id": message.id})
        elif outcome == inbound.Outcome.CLOSED:
            session.closed = True
            await self._send(session, error_frame("conversation_closed", "this conversation has ended", message.id))

    async def _ack(self, session: CustomerSession, ack: Ack) -> None:
        # Cumulative, and never beyond what this socket was sent: an ack for frames not shown yet would
        # mark them delivered and they would never be shown.
        seq = min(ack.seq, session.written_seq)
        if seq <= session.acked_seq:
            return
        session.acked_seq = seq
        if session.ack_flush is None or session.ack_flush.done():
            # A burst of frames brings a burst of acks: publish only the highest, once per interval.
            session.ack_flush = asyncio.create_task(self._flush_ack(session))

    async def _flush_ack(self, session: CustomerSession) -> None:
        await asyncio.sleep(ACK_COALESCE_SECONDS)
        await self._publish_or_error(session, "routing.customer_ack", None,
                                     conversation_id=session.conversation_id, seq=session.acked_seq)

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
