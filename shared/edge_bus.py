"""Frames for customers travel to the edge node holding their socket, on queue `edge.<node_id>`.

Publishing goes through the default exchange (routing key = queue name), which both RabbitMQ and
kombu's embedded transports route without any binding, so a worker can address a node whose queue
it never declared. If the node is gone its queue has expired and the message is dropped; that is
safe because the frames stay in the database as `sent` until the customer acknowledges them, and
are sent again when the customer resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kombu import Exchange, Queue

from shared.celery_app import get_celery_app

EDGE_QUEUE_PREFIX = "edge."
DEFAULT_EXCHANGE = Exchange("", type="direct")
# A node that has not consumed its queue for this long is gone; RabbitMQ then deletes the queue.
EDGE_QUEUE_EXPIRES_SECONDS = 120
CATCH_UP_MORE = "more"  # a resumed socket's catch-up goes on in the next envelope
CATCH_UP_DONE = "done"  # its last envelope: the socket's live frames may flow


def edge_queue_name(node_id: str) -> str:
    return f"{EDGE_QUEUE_PREFIX}{node_id}"


def edge_queue(node_id: str) -> Queue:
    name = edge_queue_name(node_id)
    return Queue(name, DEFAULT_EXCHANGE, routing_key=name, durable=False, auto_delete=False,
                 expires=EDGE_QUEUE_EXPIRES_SECONDS)


def publish_frames(node_id: str, conversation_id: str, connection_ids: Sequence[str], frames: list[dict[str, Any]],
                   catch_up: str | None = None) -> None:
    """One broker message per batch keeps a conversation's frames in order on the node's queue, and
    carries them to every socket of the conversation on that node (several tabs: one publish, not one
    per tab). `catch_up` marks a resumed socket's own catch-up (CATCH_UP_MORE, then CATCH_UP_DONE on
    the last batch): the node holds the socket's live frames back until it is done (services/edge)."""
    app = get_celery_app()
    body: dict[str, Any] = {"conversation_id": conversation_id, "connection_ids": list(connection_ids),
                            "frames": frames}
    if len(connection_ids) == 1:
        body["connection_id"] = connection_ids[0]  # what edge nodes of the one-socket version read
    if catch_up is not None:
        body["catch_up"] = catch_up
    with app.producer_pool.acquire(block=True) as producer:
        producer.publish(body, exchange=DEFAULT_EXCHANGE, routing_key=edge_queue_name(node_id),
                         serializer="json", retry=True,
                         retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5})
