"""What every task module shares: the Celery app, settings, and turning a failed call into either a
retry of the conversation's drain or a dead letter (docs/design.md principle 5)."""

from __future__ import annotations

import random
from enum import StrEnum

import structlog
from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import InterfaceError, OperationalError

from shared.celery_app import get_celery_app
from shared.clients.errors import DeliveryError
from shared.db import session_scope
from shared.domain import backoff_seconds
from shared.leases import Lease
from shared.models import Message, MessageStatus
from shared.settings import Settings, get_settings
from shared.store import lock_message

app = get_celery_app()
log = structlog.get_logger("lexdesk.workers")

# The database or the broker is down or restarting: the task is fine, the world is not. Retry it
# (Celery's autoretry, exponential backoff with jitter) for about ten minutes before giving up.
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, KombuOperationalError, ConnectionError, TimeoutError)


class LexdeskTask(Task):
    autoretry_for = INFRASTRUCTURE_ERRORS
    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 30


def settings() -> Settings:
    return get_settings()


def data_key() -> str:
    key = settings().data_key
    assert key is not None, "workers/app.py requires LEXDESK_DATA_KEY at start-up"
    return key.get_secret_value()


class RetryLater(Exception):
    """The drain stopped at a message that failed transiently; run the drain again after `countdown`."""

    def __init__(self, countdown: float, error: DeliveryError) -> None:
        super().__init__(f"retry in {countdown:.1f}s: {error}")
        self.countdown = countdown
        self.error = error


class Failure(StrEnum):
    RETRY = "retry"
    DEAD = "dead"  # dead-lettered now
    SUPERSEDED = "superseded"  # no longer pending: a drain that took over our expired lease settled it


def record_failure(message_id: int, error: DeliveryError, lease: Lease | None = None) -> tuple[Failure, Message]:
    """Count the attempt. A permanent error, or a transient one at the attempt bound, marks the
    message failed so the conversation's stream moves on. Only a pending row is touched. The drain's
    lease is settled in the same transaction: given back for a retry (the retried drain takes it again),
    renewed or given back otherwise."""
    config = settings()
    with session_scope(config.database_url) as session:
        message = lock_message(session, message_id)
        if message.status != MessageStatus.PENDING:
            if lease is not None:
                lease.settle(session)
            return Failure.SUPERSEDED, message
        message.attempts += 1
        message.last_error = str(error)[:2000]
        message.error_class = error.error_class
        dead = not error.transient or message.attempts >= config.max_attempts
        if dead:
            message.status = MessageStatus.FAILED
            message.sealed_body = None  # never kept beyond the attempts that needed it
        log.warning("delivery_failed", message_id=message_id, conversation_id=message.conversation_id,
                    destination=message.destination, attempts=message.attempts, error_class=error.error_class,
                    dead_lettered=dead, error=str(error)[:300])
        if lease is not None:
            if dead:
                lease.settle(session)
            else:
                lease.give_back(session)
        return (Failure.DEAD if dead else Failure.RETRY), message


def retry_delay(message: Message, error: DeliveryError) -> float:
    config = settings()
    return backoff_seconds(message.attempts, config.retry_backoff_base, config.retry_backoff_max,
                           error.retry_after, random.random())


def retry_drain(task: Task, exc: RetryLater) -> None:
    """Celery's own retry: a new message for the same drain, after the backoff."""
    raise task.retry(exc=exc, countdown=exc.countdown, max_retries=None)
