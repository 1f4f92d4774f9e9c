"""Frames for customers travel to the edge node holding their socket, on queue `edge.<node_id>`.

Publishing goes through the default exchange (routing key = queue name), which both RabbitMQ and
kombu's embedded transports route without any binding, so a worker can address a node whose queue
it never declared. If the node is gone its queue has expired and the message is dropped; that is
safe because the frames stay in the database as `sent` until the customer acknowledges them, and
are sent again when the customer resumes.
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from shared.celery_app import get_celery_app

EDGE_QUEUE_PREFIX = "edge."
DEFAULT_EXCHANGE = Exchange("", type="direct")
# A node that has not consumed its queue for this long is gone; RabbitMQ then deletes the queue.
EDGE_QUEUE_EXPIRES_SECONDS = 120


def edge_queue_name(node_id: str) -> str:
    return f"{EDGE_QUEUE_PREFIX}{node_id}"


def edge_queue(node_id: str) -> Queue:
    name = edge_queue_name(node_id)
    return Queue(name, DEFAULT_EXCHANGE, routing_key=name, durable=False, auto_delete=False,
                 expires=EDGE_QUEUE_EXPIRES_SECONDS)


def publish_frames(node_id: str, conversation_id: str, connection_id: str, frames: list[dict[str, Any]]) -> None:
    """One broker message per batch keeps a conversation's frames in order on the node's queue."""
    app = get_celery_app()
    body = {"conversation_id": conversation_id, "connection_id": connection_id, "frames": frames}
    with app.producer_pool.acquire(block=True) as producer:
        producer.publish(body, exchange=DEFAULT_EXCHANGE, routing_key=edge_queue_name(node_id),
                         serializer="json", retry=True,
                         retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5})
