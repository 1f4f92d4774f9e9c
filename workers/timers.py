"""Queue `timers`: periodic work, run by every timers worker one run at a time (shared/periodic.py,
workers/app.py), the still-waiting timers, and the pacing of multi-message bot answers. The sweep is
what makes "publish after commit" and "a killed worker loses nothing" hold even when the broker or a
process died at the wrong moment."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from celery import Task
from sqlalchemy import Select, and_, exists, func, select, update

from shared.celery_app import send_task
from shared.db import session_scope
from shared.domain import BOT_STATES
from shared.embedded_broker import purge_consumed
from shared.leases import lock_conversation
from shared.left_messages import hand_over_due, is_waiting, waiting
from shared.lifecycle import DELIVER, LEX_DRAIN, TALKDESK_DRAIN, close, give_up_waiting
from shared.models import (
    Connection,
    Conversation,
    ConversationState,
    Destination,
    DrainLease,
    Message,
    MessageStatus,
    Sender,
    as_utc,
    utcnow,
)
from shared.outbox import relay, unit_of_work
from shared.pacing import BOT_CONTINUES, show_next
from shared.redaction import is_sensitive_slot
from shared.retention import cutoff_for, purge
from shared.store import add_message
from workers.base import LexdeskTask, app, log, settings

DRAIN_TASKS = {Destination.LEX: LEX_DRAIN, Destination.TALKDESK: TALKDESK_DRAIN, Destination.CUSTOMER: DELIVER}
# How long a row may sit pending, or a frame unacknowledged on a live socket, before the sweep acts.
# Long enough that a drain merely queued behind a backlog is not published again (the bench saw that
# make a backlog worse); a drain stranded by a killed worker waits for its 30 s lease anyway.
STALE_AFTER_SECONDS = 30.0
UNACKED_RESEND_SECONDS = 60.0
OUTBOX_GRACE_SECONDS = 5.0
# Only where the bot's configuration gives no still-waiting response or slot prompt.
WAITING_PROMPT_TEXT = "Still here whenever you're ready. Take your time."
WAITING_TIMEOUT_TEXT = "Let's pick this up when you're ready: just send your answer whenever you have it."
TIMER_SLACK_SECONDS = 0.25  # a countdown that fires a little early still counts as on time
# A socket that has not acknowledged a frame for this long is on a node that died without saying so;
# the frames wait for the customer's resume instead of being re-published forever.
RESEND_GIVE_UP_SECONDS = 900.0
# A retention run deletes for at most this long, then the next run goes on where it stopped: the
# periodic runner runs its jobs one after another, so a first run over a long backlog would otherwise
# hold up the sweep (and, run as a Celery task, outlast RabbitMQ's consumer timeout).
PURGE_MAX_SECONDS = 30.0
STRANDED_PER_SWEEP = 500  # drains re-published per destination kind and sweep


@app.task(name="timers.sweep", base=LexdeskTask)
def sweep() -> dict[str, int]:
    config = settings()
    relayed = relay(config, older_than=OUTBOX_GRACE_SECONDS)
    now = utcnow()
    with session_scope(config.database_url) as session:
        # Frames a live socket never acknowledged (a node queue lost in a broker restart): send again.
        live = exists().where(Connection.conversation_id == Message.conversation_id,
                              Connection.disconnected_at.is_(None))
        resent = session.execute(
            update(Message)
            .where(Message.destination == Destination.CUSTOMER, Message.status == MessageStatus.SENT,
                   Message.sent_at < now - timedelta(seconds=UNACKED_RESEND_SECONDS),
                   Message.created_at > now - timedelta(seconds=RESEND_GIVE_UP_SECONDS), live)
            .values(status=MessageStatus.PENDING)
        ).rowcount
        stale = now - timedelta(seconds=STALE_AFTER_SECONDS)
        # Rows for Lex and Talkdesk pending with no live lease: their drain was never published (a crash
        # between commit and publish: drains have no outbox row) or died with its worker.
        leased = exists().where(DrainLease.conversation_id == Message.conversation_id,
                                DrainLease.destination == Message.destination, DrainLease.expires_at > now)
        to_vendors = _oldest_first(
            select(Message.conversation_id, Message.destination, func.min(Message.created_at).label("oldest"))
            .where(Message.status == MessageStatus.PENDING, Message.created_at < stale, ~leased,
                   Message.destination.in_([Destination.LEX, Destination.TALKDESK])))
        # Frames for the customer, only where a socket is live: without one they wait for the customer's
        # resume, which sends them; re-publishing their delivery every sweep would do nothing, for ever.
        to_sockets = _oldest_first(
            select(Message.conversation_id, Message.destination, func.min(Message.created_at).label("oldest"))
            .where(Message.status == MessageStatus.PENDING, Message.created_at < stale,
                   Message.destination == Destination.CUSTOMER, live))
        stranded = [*session.execute(to_vendors).all(), *session.execute(to_sockets).all()]
    for conversation_id, destination, _oldest in stranded:
        send_task(DRAIN_TASKS[Destination(destination)], conversation_id=conversation_id)
    purged = purge_consumed(config.broker_url)
    if relayed or resent or stranded:
        log.info("sweep", outbox_relayed=relayed, frames_resent=resent, drains_restarted=len(stranded),
                 broker_rows_purged=purged)
    return {"outbox_relayed": relayed, "frames_resent": resent, "drains_restarted": len(stranded)}


def _oldest_first(query: Select[Any]) -> Select[Any]:
    # Oldest first and bounded: a backlog beyond one sweep's share is taken on by the next sweeps, and
    # the longest-stranded conversation is never the one starved.
    return (query.group_by(Message.conversation_id, Message.destination)
            .order_by(func.min(Message.created_at)).limit(STRANDED_PER_SWEEP))


@app.task(name="timers.still_waiting", bind=True, base=LexdeskTask)
def still_waiting(self: Task, conversation_id: str, since_seq: int, prompts_sent: int,
                  started_at: float | None = None, frequency: float | None = None, timeout: float | None = None,
                  still_waiting: list[str] | None = None, reprompt: list[str] | None = None,
                  slot: str | None = None, intent: str | None = None) -> None:
    """One step of a Waiting bot intent's series (Lex wait-and-continue), as the slot's
    waitAndContinueSpecification says (workers/lex.py reads it): a still-waiting prompt every
    `frequency` seconds and, `timeout` seconds after the wait began, the slot's own prompt again, which
    ends the series. Anything the customer wrote since `since_seq` cancels it, and so does the end of
    the bot phase. Each step is a Celery countdown task, acknowledged late: a worker restart redelivers it."""
    config = settings()
    frequency = frequency or config.waiting_prompt_interval
    timeout = timeout or config.waiting_timeout
    started_at = started_at or time.time()
    elapsed = time.time() - started_at
    with unit_of_work(config) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None or conversation.state not in BOT_STATES:
            return
        answered = uow.session.scalar(select(exists().where(
            Message.conversation_id == conversation_id, Message.sender == Sender.CUSTOMER,
            Message.seq > since_seq)))
        if answered:
            return
        timed_out = elapsed >= timeout - TIMER_SLACK_SECONDS
        if prompts_sent > 0 or timed_out:
            if timed_out:
                texts = reprompt or [WAITING_TIMEOUT_TEXT]
                lex = {"intent": intent, "intent_state": "InProgress", "dialog_action": "ElicitSlot",
                       "server_initiated": True, **({"sensitive_answer": True} if slot and is_sensitive_slot(slot)
                                                    else {})}
            else:
                texts = still_waiting or [WAITING_PROMPT_TEXT]
                lex = {"intent": intent, "intent_state": "Waiting", "server_initiated": True}
            for text in texts:
                add_message(uow.session, conversation_id, sender=Sender.BOT, destination=Destination.CUSTOMER,
                            body=text, payload={"lex": lex}, intent=intent)
            uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
            if timed_out:
                log.info("waiting_timed_out", conversation_id=conversation_id, slot=slot, waited=round(elapsed, 1))
                return
    # The next reminder, or the timeout if it comes first. Celery's countdown; the bot's limits (frequency
    # at most 300 s, timeout 900 s) are far below RabbitMQ's consumer_timeout (30 min).
    next_at = min((prompts_sent + 1) * frequency, timeout)
    self.apply_async(kwargs={"conversation_id": conversation_id, "since_seq": since_seq,
                             "prompts_sent": prompts_sent + 1, "started_at": started_at, "frequency": frequency,
                             "timeout": timeout, "still_waiting": still_waiting, "reprompt": reprompt,
                             "slot": slot, "intent": intent},
                     countdown=max(0.0, started_at + next_at - time.time()))


@app.task(name="timers.agent_queue", bind=True, base=LexdeskTask)
def agent_queue(self: Task, conversation_id: str, updates_sent: int) -> None:
    """While the conversation waits for an agent: every LEXDESK_QUEUE_UPDATE_INTERVAL a word to the
    customer with their place in lexdesk's queue (conversations handed to Talkdesk and not yet taken,
    oldest first), and after LEXDESK_QUEUE_TIMEOUT back to the bot. An agent joining ends the series.
    The first call (from the outbox, at the handoff) only schedules the first step."""
    config = settings()
    if updates_sent > 0:
        with unit_of_work(config) as uow:
            conversation = lock_conversation(uow.session, conversation_id)
            if conversation is None or conversation.state != ConversationState.AGENT_QUEUED \
                    or conversation.queued_at is None:
                return
            waited = (utcnow() - as_utc(conversation.queued_at)).total_seconds()
            # A message left out of hours waits for an agent however long it takes: its customer may be
            # gone, and ending the Talkdesk conversation would leave it unread.
            timeout = config.queue_timeout if conversation.left_message_at is None else 0
            if timeout and waited >= timeout - TIMER_SLACK_SECONDS:
                give_up_waiting(uow, conversation, waited)
                log.info("agent_queue_timed_out", conversation_id=conversation_id, waited=round(waited, 1))
                return
            ahead = uow.session.scalar(
                select(func.count()).select_from(Conversation)
                .where(Conversation.state == ConversationState.AGENT_QUEUED,
                       Conversation.queued_at < conversation.queued_at)) or 0
            add_message(uow.session, conversation_id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER,
                        body=f"Still waiting for an agent. You are number {ahead + 1} in the queue.",
                        payload={"queue_position": ahead + 1})
            uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
    countdown = config.queue_update_interval
    if config.queue_timeout:
        countdown = min(countdown, max(0.0, config.queue_timeout - updates_sent * config.queue_update_interval))
    self.apply_async(kwargs={"conversation_id": conversation_id, "updates_sent": updates_sent + 1},
                     countdown=countdown)


@app.task(name="timers.bot_continues", bind=True, base=LexdeskTask)
def bot_continues(self: Task, conversation_id: str, due: bool = False) -> None:
    """The next held message of a multi-message bot answer (shared/pacing.py), LEXDESK_BOT_TYPING_DELAY
    after the one before; the first call (from the outbox) only schedules the step."""
    config = settings()
    if not due:
        self.apply_async(kwargs={"conversation_id": conversation_id, "due": True}, countdown=config.bot_typing_delay)
        return
    with unit_of_work(config) as uow:
        conversation = lock_conversation(uow.session, conversation_id)
        if conversation is None:
            return
        if show_next(uow, conversation):
            uow.publish_after_commit(BOT_CONTINUES, conversation_id=conversation_id)


@app.task(name="timers.close_inactive", base=LexdeskTask)
def close_inactive() -> int:
    """Conversations nobody wrote in for `inactivity_timeout` end, and both sides are told. Not one whose
    message left outside business hours waits for the opening: it stays open to be handed over live
    (shared/left_messages.py)."""
    config = settings()
    cutoff = utcnow() - timedelta(seconds=config.inactivity_timeout)
    with session_scope(config.database_url) as session:
        idle = session.scalars(
            select(Conversation.id)
            .where(and_(Conversation.state != ConversationState.CLOSED, Conversation.updated_at < cutoff,
                        ~waiting()))
            .limit(500)
        ).all()
    closed = 0
    for conversation_id in idle:
        with unit_of_work(config) as uow:
            conversation = lock_conversation(uow.session, conversation_id)
            if conversation is not None and as_utc(conversation.updated_at) < cutoff and not is_waiting(conversation):
                closed += close(uow, conversation, by="timeout")
    return closed


@app.task(name="timers.hand_over_left_messages", base=LexdeskTask)
def hand_over_left_messages(now: datetime | None = None) -> int:
    """At the opening (and every run while open), the messages left outside business hours go to
    Talkdesk as handoffs, oldest first and bounded per run (shared/left_messages.py). A periodic job
    (workers/app.py), not a Celery countdown to the opening: that may be days away, far beyond RabbitMQ's
    consumer_timeout, and the schedule may change meanwhile. `now`: the clock, for tests."""
    handed = hand_over_due(settings(), now or utcnow())
    if handed:
        log.info("left_messages_handed_over", conversations=handed)
    return handed


@app.task(name="timers.purge_expired", base=LexdeskTask)
def purge_expired() -> dict[str, object]:
    """Closed conversations older than LEXDESK_RETENTION_DAYS go, with their messages (shared/retention.py)."""
    config = settings()
    if config.retention_days == 0:  # keep for ever
        return {"conversations": 0, "messages": 0, "connections": 0, "dry_run": False, "complete": True}
    result = purge(config.database_url, cutoff_for(timedelta(days=config.retention_days)),
                   max_seconds=PURGE_MAX_SECONDS)
    if result.conversations:
        log.info("retention_purged", conversations=result.conversations, messages=result.messages,
                 connections=result.connections, complete=result.complete, retention_days=config.retention_days)
    return result.as_json()
