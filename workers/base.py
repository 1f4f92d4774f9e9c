"""What every task module shares: the Celery app, settings, and turning a failed call into either a
retry of the conversation's drain or a dead letter (docs/design.md principle 5), telling the customer
what became of their message on the way (shared/message_status.py)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from enum import StrEnum

import structlog
from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import exists, select
from sqlalchemy.exc import InterfaceError, OperationalError

from shared.celery_app import get_celery_app
from shared.clients.errors import DeliveryError
from shared.domain import backoff_seconds
from shared.leases import Lease, lock_conversation
from shared.lifecycle import DELIVER
from shared.message_status import DELAYED, FAILED, failed_detail
from shared.models import Destination, Message, MessageStatus, Sender, as_utc, utcnow
from shared.outbox import UnitOfWork, unit_of_work
from shared.settings import Settings, get_settings
from shared.store import add_message, lock_message

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
    """The drain stopped at a message that failed transiently; run the drain again after `countdown`,
    as `lease_holder`, which keeps the conversation's lease meanwhile."""

    def __init__(self, countdown: float, error: DeliveryError, lease_holder: str) -> None:
        super().__init__(f"retry in {countdown:.1f}s: {error}")
        self.countdown = countdown
        self.error = error
        self.lease_holder = lease_holder


class Failure(StrEnum):
    RETRY = "retry"
    DEAD = "dead"  # dead-lettered now
    SUPERSEDED = "superseded"  # no longer pending: a drain that took over our expired lease settled it


def record_failure(message_id: int, error: DeliveryError, lease: Lease | None = None) -> tuple[Failure, Message]:
    """See `_record_failure`; with a lease, a retry raises RetryLater (the lease held until it runs)."""
    outcome, message, countdown = _record_failure(message_id, error, lease)
    if outcome == Failure.RETRY and lease is not None:
        raise RetryLater(countdown, error, lease.holder) from error
    return outcome, message


def _record_failure(message_id: int, error: DeliveryError, lease: Lease | None) -> tuple[Failure, Message, float]:
    """Count the attempt. A permanent error, or a transient one once LEXDESK_RETRY_FOR has passed since
    the message was accepted (or at LEXDESK_MAX_ATTEMPTS, when that is set), marks the message failed
    so the conversation's stream moves on, and tells the customer. A transient one before that reports
    the conversation's waiting messages `delayed` once they have waited LEXDESK_DELAYED_AFTER. Only a
    pending row is touched. The drain's lease is settled in the same transaction: held for a retry
    (until the retried drain, the same holder, takes it again), renewed or given back otherwise."""
    config = settings()
    with unit_of_work(config) as uow:
        session = uow.session
        # The conversation's row lock before its message's, as every writer takes them (a message first
        # and the conversation after, against a writer doing the opposite, deadlocks).
        conversation_id = lease.conversation_id if lease is not None else session.get_one(
            Message, message_id).conversation_id
        locked = lock_conversation(session, conversation_id) is not None
        message = lock_message(session, message_id)
        if message.status != MessageStatus.PENDING:
            if lease is not None:
                lease.settle(session, locked=locked)
            return Failure.SUPERSEDED, message, 0.0
        now = utcnow()
        message.attempts += 1
        message.last_error = str(error)[:2000]
        message.error_class = error.error_class
        failing_for = (now - as_utc(message.retry_from or message.created_at)).total_seconds()
        dead = (not error.transient or failing_for >= config.retry_for
                or (config.max_attempts is not None and message.attempts >= config.max_attempts))
        if dead:
            message.status = MessageStatus.FAILED
            message.sealed_body = None  # never kept beyond the attempts that needed it
            uow.notify(message, FAILED, failed_detail(message))
        else:
            report_delays(uow, message, now)
        log.warning("delivery_failed", message_id=message_id, conversation_id=message.conversation_id,
                    destination=message.destination, attempts=message.attempts, error_class=error.error_class,
                    failing_for=round(failing_for, 1), dead_lettered=dead, error=str(error)[:300])
        countdown = 0.0 if dead else retry_delay(message, error)
        if lease is not None:
            if dead:
                lease.settle(session, locked=locked)
            else:
                lease.hold_for_retry(session, countdown)
        return (Failure.DEAD if dead else Failure.RETRY), message, countdown


OUTAGE_NOTES = {
    Destination.LEX: "The assistant is not answering right now. Your messages are saved and will be answered "
                     "as soon as it is back.",
    Destination.TALKDESK: "We are having trouble reaching the agent right now. Your messages are saved and will "
                          "be delivered as soon as we can.",
}


def report_delays(uow: UnitOfWork, failing: Message, now: datetime) -> None:
    """The failing message and those waiting behind it, once they have waited LEXDESK_DELAYED_AFTER,
    are reported `delayed`, each once; the first time in an outage the customer also reads why."""
    session = uow.session
    threshold = now - timedelta(seconds=settings().delayed_after)
    waiting = (Message.conversation_id == failing.conversation_id, Message.destination == failing.destination,
               Message.status == MessageStatus.PENDING)
    late = session.scalars(
        select(Message).where(*waiting, Message.delayed_at.is_(None), Message.created_at <= threshold)
        .order_by(Message.seq)
    ).all()
    if not late:
        return
    already_told = session.scalar(select(exists().where(*waiting, Message.delayed_at.is_not(None))))
    for message in late:
        message.delayed_at = now
        uow.notify(message, DELAYED)
    if not already_told:
        add_message(session, failing.conversation_id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER,
                    body=OUTAGE_NOTES[Destination(failing.destination)])
        uow.publish_after_commit(DELIVER, conversation_id=failing.conversation_id)
    log.warning("delivery_delayed", conversation_id=failing.conversation_id, destination=failing.destination,
                messages=len(late))


def retry_delay(message: Message, error: DeliveryError) -> float:
    config = settings()
    return backoff_seconds(message.attempts, config.retry_backoff_base, config.retry_backoff_max,
                           error.retry_after, random.random())


def retry_drain(task: Task, exc: RetryLater) -> None:
    """Celery's own retry: a new message for the same drain, after the backoff, as the lease's holder."""
    kwargs = {**(task.request.kwargs or {}), "lease_holder": exc.lease_holder}
    raise task.retry(exc=exc, countdown=exc.countdown, max_retries=None, kwargs=kwargs)
