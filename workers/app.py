"""The worker entry point (`celery -A workers.app worker -Q lex`): the Celery app with every task
module registered, one module per queue, and the periodic schedule for the `timers` queue."""

from __future__ import annotations

from celery.signals import worker_init

from shared.celery_app import DEAD_LETTER_QUEUE
from shared.clients.factory import lex_client, talkdesk_client
from shared.logging import configure_logging
from workers import lex, routing, talkdesk, timers
from workers.base import app, settings

TASK_MODULES = (routing, lex, talkdesk, timers)

configure_logging("worker")


@worker_init.connect
def prepare_worker(**_: object) -> None:
    """The work queues name the dead-letter exchange; it and its queue must exist before a message is
    rejected, or RabbitMQ drops the message."""
    if settings().uses_amqp:
        with app.connection_for_write() as connection:
            DEAD_LETTER_QUEUE.bind(connection.default_channel).declare()
    # Built now rather than by the first task: that one would pay ~0.5 s, and two threads could race
    # to build them. A Secrets Manager error stops the worker here, with its message.
    talkdesk_client()
    lex_client()


settings().require("data_key")  # the edge seals card data with it; the lex worker unseals it
app.conf.beat_schedule = {
    "sweep": {"task": "timers.sweep", "schedule": settings().sweep_interval},
    "close-inactive": {"task": "timers.close_inactive", "schedule": 60.0},
}

__all__ = ["TASK_MODULES", "app"]
