"""The worker entry point (`celery -A workers.app worker -Q lex`): the Celery app with every task
module registered, one module per queue, and the periodic jobs every `timers` worker runs."""

from __future__ import annotations

import os

from celery.signals import worker_init, worker_ready, worker_shutdown

from shared.celery_app import DEAD_LETTER_QUEUE
from shared.clients.factory import lex_client, talkdesk_client
from shared.logging import configure_logging
from shared.periodic import Job, PeriodicRunner
from workers import lex, routing, talkdesk, timers
from workers.base import app, settings

TASK_MODULES = (routing, lex, talkdesk, timers)

configure_logging("worker")


@worker_init.connect
def prepare_worker(**_: object) -> None:
    """The work queues name the dead-letter exchange; it and its queue must exist before a message is
    rejected, or RabbitMQ drops the message."""
    # Files this worker creates (the embedded database and broker, logs) are its user's only, also when
    # it is started as `celery -A workers.app worker`, which does not go through lexdesk's CLI.
    os.umask(0o077)
    if settings().uses_amqp:
        with app.connection_for_write() as connection:
            DEAD_LETTER_QUEUE.bind(connection.default_channel).declare()
    # Built now rather than by the first task: that one would pay ~0.5 s, and two threads could race
    # to build them. A Secrets Manager error stops the worker here, with its message.
    talkdesk_client()
    lex_client()


settings().require("data_key")  # the edge seals card data with it; the lex worker unseals it

_runner: PeriodicRunner | None = None


def periodic_jobs() -> list[Job]:
    """What every `timers` worker runs, one run at a time across all of them (shared/periodic.py). No
    Celery beat is needed, and losing any one process loses none of it."""
    interval = settings().sweep_interval
    return [
        Job("sweep", interval, timers.sweep, hold=max(30.0, 4 * interval)),
        Job("close-inactive", 60.0, timers.close_inactive),
        # Does nothing while closed; within a minute of the opening, hands over the left messages.
        Job("left-messages", 60.0, timers.hand_over_left_messages),
        # Hourly is plenty for a cut-off counted in days; each run is bounded (timers.PURGE_MAX_SECONDS).
        Job("purge-expired", 3600.0, timers.purge_expired, hold=timers.PURGE_MAX_SECONDS + 60),
    ]


@worker_ready.connect
def start_periodic_jobs(sender: object = None, **_: object) -> None:
    global _runner
    consumed = set(app.amqp.queues.consume_from or app.amqp.queues)
    if "timers" not in consumed:
        return
    _runner = PeriodicRunner(settings().database_url, periodic_jobs())
    _runner.start()


@worker_shutdown.connect
def stop_periodic_jobs(**_: object) -> None:
    if _runner is not None:
        _runner.stopping.set()

__all__ = ["TASK_MODULES", "app"]
