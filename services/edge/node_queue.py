"""Consumes this node's queue `edge.<node_id>` in a thread (kombu is blocking) and hands each
envelope of frames to the asyncio loop with call_soon_threadsafe. ConsumerMixin reconnects with
backoff when the broker goes away, and redeclares the queue when it comes back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import structlog
from kombu import Connection, Consumer, Message
from kombu.mixins import ConsumerMixin

from shared.edge_bus import edge_queue

log = structlog.get_logger(__name__)

Envelope = dict[str, Any]


class NodeQueueConsumer(ConsumerMixin):
    def __init__(self, broker_url: str, node_id: str, loop: asyncio.AbstractEventLoop,
                 on_envelope: Callable[[Envelope], None], transport_options: dict[str, Any]) -> None:
        self.connection = Connection(broker_url, transport_options=transport_options)
        self.queue = edge_queue(node_id)
        self.loop = loop
        self.on_envelope = on_envelope
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None

    def get_consumers(self, consumer_cls: type[Consumer], channel: Any) -> list[Consumer]:
        return [consumer_cls(queues=[self.queue], callbacks=[self._received], accept=["json"], prefetch_count=200)]

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        self.ready.set()

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        log.warning("edge_broker_connection_lost", error=repr(exc), retry_in=interval)

    def _received(self, body: Envelope, message: Message) -> None:
        # Acknowledged on hand-over: the frames are in the database until the customer acks them,
        # so a frame lost from here on is sent again on resume or by the sweep.
        try:
            self.loop.call_soon_threadsafe(self.on_envelope, body)
        finally:
            message.ack()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="edge-node-queue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.should_stop = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.connection.release()
