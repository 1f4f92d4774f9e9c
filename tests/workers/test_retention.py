"""Retention (issue 7): closed conversations past the cut-off are deleted with their messages,
connections and leases, in bounded transactions; open and recent ones stay; a dry run only counts;
the periodic task does it with LEXDESK_RETENTION_DAYS and every timers worker runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from shared.db import get_engine, session_scope
from shared.models import (
    Connection,
    Conversation,
    ConversationState,
    Destination,
    DrainLease,
    Message,
    MessageStatus,
    Sender,
    utcnow,
)
from shared.store import add_message, attach_connection, create_conversation
from tests.workers.conftest import Env

REPO = Path(__file__).resolve().parents[2]


def _conversation(env: Env, *, closed: bool, idle: timedelta) -> str:
    """A conversation with two messages, a connection and a lease, last active `idle` ago."""
    with session_scope(env.database_url) as session:
        conversation = create_conversation(session, customer_name="Ana")
        add_message(session, conversation.id, sender=Sender.CUSTOMER, destination=Destination.LEX, body="hi",
                    status=MessageStatus.DELIVERED)
        add_message(session, conversation.id, sender=Sender.BOT, destination=Destination.CUSTOMER, body="hello")
        attach_connection(session, conversation.id, uuid.uuid4().hex, "edge-0")
        session.add(DrainLease(conversation_id=conversation.id, destination="lex", holder="w",
                               expires_at=utcnow()))
        if closed:
            conversation.state = ConversationState.CLOSED
            conversation.closed_at = utcnow() - idle
        session.flush()
        session.execute(update(Conversation).where(Conversation.id == conversation.id)
                        .values(updated_at=utcnow() - idle))
        return conversation.id


def _left(env: Env, conversation_id: str) -> tuple[bool, int, int, int]:
    """(conversation exists, its messages, connections, leases)."""
    with session_scope(env.database_url) as session:
        def rows(model: Any) -> int:
            return session.scalar(select(func.count()).select_from(model)
                                  .where(model.conversation_id == conversation_id)) or 0

        return (session.get(Conversation, conversation_id) is not None, rows(Message), rows(Connection),
                rows(DrainLease))


def test_closed_conversations_past_the_cutoff_go_with_their_rows_and_the_rest_stay(env: Env) -> None:
    from shared import retention

    old_closed = [_conversation(env, closed=True, idle=timedelta(days=days)) for days in (91, 400)]
    recent_closed = _conversation(env, closed=True, idle=timedelta(days=89))
    old_open = _conversation(env, closed=False, idle=timedelta(days=400))  # still someone's chat

    result = retention.purge(env.database_url, retention.cutoff_for(retention.parse_age("90d")))

    assert (result.conversations, result.messages, result.connections) == (2, 4, 2)
    assert result.complete and not result.dry_run
    for gone in old_closed:
        assert _left(env, gone) == (False, 0, 0, 0)
    for kept in (recent_closed, old_open):
        assert _left(env, kept) == (True, 2, 1, 1)


def test_a_dry_run_counts_and_deletes_nothing(env: Env) -> None:
    from shared import retention

    old = [_conversation(env, closed=True, idle=timedelta(hours=13)) for _ in range(3)]
    kept = _conversation(env, closed=True, idle=timedelta(hours=11))

    counted = retention.purge(env.database_url, retention.cutoff_for(retention.parse_age("12h")), dry_run=True)

    assert (counted.conversations, counted.messages, counted.connections, counted.dry_run) == (3, 6, 3, True)
    for conversation_id in [*old, kept]:
        assert _left(env, conversation_id) == (True, 2, 1, 1)


def test_deletion_goes_in_transactions_of_bounded_size(env: Env) -> None:
    from shared import retention

    old = [_conversation(env, closed=True, idle=timedelta(minutes=31)) for _ in range(5)]
    commits: list[int] = []
    engine = get_engine(env.database_url)

    def count_commit(_: object) -> None:
        commits.append(1)

    event.listen(engine, "commit", count_commit)
    try:
        result = retention.purge(env.database_url, retention.cutoff_for(retention.parse_age("30m")), batch_size=2)
    finally:
        event.remove(engine, "commit", count_commit)

    assert result.conversations == 5 and result.messages == 10
    assert len(commits) == 3  # 2 + 2 + 1 conversations, one transaction each
    assert all(_left(env, c) == (False, 0, 0, 0) for c in old)


def test_a_run_with_a_time_budget_stops_between_batches_and_the_next_run_goes_on(env: Env) -> None:
    from shared import retention

    for _ in range(3):
        _conversation(env, closed=True, idle=timedelta(days=2))
    cutoff = retention.cutoff_for(retention.parse_age("1d"))

    first = retention.purge(env.database_url, cutoff, batch_size=1, max_seconds=0)
    assert (first.conversations, first.complete) == (1, False)
    rest = retention.purge(env.database_url, cutoff, batch_size=1)
    assert (rest.conversations, rest.complete) == (2, True)


@pytest.mark.parametrize(("text", "expected"), [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    (" 7D ", timedelta(days=7)),
])
def test_ages_are_days_hours_or_minutes(text: str, expected: timedelta) -> None:
    from shared.retention import parse_age

    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["0d", "90", "d", "1.5d", "-3d", "3w", "3 d", "90days", "", "1e3d", "\uff19d"])
def test_anything_else_is_not_an_age(text: str) -> None:
    from shared.retention import parse_age

    with pytest.raises(ValueError, match=r"90d, 12h, 30m|more than 0"):
        parse_age(text)


def test_the_periodic_task_purges_with_the_retention_setting(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import get_settings
    from workers import timers

    old = _conversation(env, closed=True, idle=timedelta(days=31))
    recent = _conversation(env, closed=True, idle=timedelta(days=29))
    open_one = _conversation(env, closed=False, idle=timedelta(days=31))

    monkeypatch.setenv("LEXDESK_RETENTION_DAYS", "0")  # keep for ever
    get_settings.cache_clear()
    assert timers.purge_expired()["conversations"] == 0
    assert _left(env, old)[0]

    monkeypatch.setenv("LEXDESK_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    summary = timers.purge_expired()
    assert (summary["conversations"], summary["messages"], summary["complete"]) == (1, 2, True)
    assert _left(env, old) == (False, 0, 0, 0)
    assert _left(env, recent)[0] and _left(env, open_one)[0]


def test_the_purge_task_is_one_of_the_periodic_jobs(tmp_path: Path) -> None:
    """Every timers worker runs it (workers/app.py `periodic_jobs`, shared/periodic.py), like the sweep."""
    probe = ("import json; from workers.app import periodic_jobs; "
             "print(json.dumps({j.name: [j.run.name, j.interval] for j in periodic_jobs()}))")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")}
    environ.update({"LEXDESK_STATE_DIR": str(tmp_path), "LEXDESK_BROKER_URL": "memory://",
                    "LEXDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}",
                    "LEXDESK_DATA_KEY": os.environ["LEXDESK_DATA_KEY"]})
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=environ, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    schedule = json.loads(result.stdout.strip().splitlines()[-1])
    assert schedule["purge-expired"][0] == "timers.purge_expired"
    assert 60 <= schedule["purge-expired"][1] <= 24 * 3600
