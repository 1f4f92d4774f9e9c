"""The Celery application: broker settings, queues and the route table.

It lives in shared/ so the services can send work by task name without importing workers/; the task
bodies are registered by workers/app.py. Settings that close Celery's known holes (docs/design.md, "Known
traps") are set here once, for every process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from shared import embedded_broker
from shared.settings import Settings, get_settings

QUEUES = ("routing", "lex", "talkdesk", "timers")
# A task message that cannot be decoded, names no known task, or whose task raised an unexpected
# error is rejected without requeue; RabbitMQ moves it here rather than losing it or looping on it.
# (kombu's embedded transports have no dead-lettering: there it is dropped and logged.)
DEAD_LETTER_EXCHANGE = Exchange("lexdesk.dead-letter", type="fanout", durable=True)
DEAD_LETTER_QUEUE = Queue("lexdesk.dead-letters", DEAD_LETTER_EXCHANGE, durable=True)

# Queue per task-name prefix: "lex.drain" goes to "lex", and so on.
TASK_ROUTES = {f"{queue}.*": {"queue": queue, "routing_key": queue} for queue in QUEUES}


def build_celery_app(settings: Settings) -> Celery:
    embedded_broker.install()
    app = Celery("lexdesk", broker=settings.broker_url, set_as_current=False)
    queue_arguments: dict[str, Any] = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name}
    if settings.broker_quorum_queues:
        queue_arguments["x-queue-type"] = "quorum"
    app.conf.update(
        task_queues=[Queue(q, routing_key=q, durable=True, queue_arguments=queue_arguments) for q in QUEUES],
        task_default_queue="routing",
        task_routes=TASK_ROUTES,
        worker_consumer="workers.consumer:Consumer",
        broker_connection_max_retries=None,
        **delivery_settings(settings.uses_amqp),
    )
    return app


def delivery_settings(uses_amqp: bool) -> dict[str, Any]:
    """The settings that decide what a task hop costs and what survives a crash; `lexdesk bench`'s bare
    Celery chain (tools/bench/baseline.py) runs with the same ones, so that the comparison is fair."""
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        # A task is acknowledged only after it ran; a killed worker's task goes back to the queue, and a
        # task cut off by a broker connection loss is cancelled rather than run twice concurrently.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A task that raised (not a retry) is rejected, so it lands in the dead-letter queue instead of
        # being acknowledged and forgotten.
        "task_acks_on_failure_or_timeout": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # One message at a time per worker process on RabbitMQ: tasks wait on Talkdesk/Lex, and a hoarded
        # burst would wait behind a slow call while other workers idle. The embedded transport polls,
        # and with 1 its consumer sleeps a poll interval whenever every thread is busy: allow 4.
        "worker_prefetch_multiplier": 1 if uses_amqp else 4,
        # After a reconnect Celery restores the prefetch count from a pool thread, on the connection the
        # consumer loop reads: with the threads pool that desynchronises the AMQP connection and the
        # worker stops consuming for good (found by `lexdesk chaos`: a RabbitMQ restart under load).
        "worker_enable_prefetch_count_reduction": False,
        # With AMQP, apply_async returns only once the broker has the message (publisher confirms).
        "broker_transport_options": {"confirm_publish": True} if uses_amqp else {},
        "broker_connection_retry_on_startup": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "timezone": "UTC",
    }


@lru_cache(maxsize=1)
def get_celery_app() -> Celery:
    return build_celery_app(get_settings())


def send_task(name: str, expires: float | None = None, **kwargs: Any) -> None:
    """Publish a task by name; with AMQP this returns only after the broker confirmed it. A task with
    `expires` (seconds) that a worker takes later than that is dropped unrun (worth nothing by then)."""
    get_celery_app().send_task(name, kwargs=kwargs, expires=expires)
