"""`lexdesk purge --older-than 90d [--dry-run]` (issue 7, retention) as an operator runs it, on
PostgreSQL: what it counts, what it deletes, what it keeps, and that a conversation another
transaction holds is skipped rather than waited for."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select, update

from shared.db import session_scope
from shared.migrate import upgrade
from shared.models import Conversation, ConversationState, Destination, Message, MessageStatus, Sender, utcnow
from shared.store import add_message, attach_connection, create_conversation

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def database() -> Iterator[str]:
    """A database of its own: a purge must never meet another test's conversations."""
    name = f"lexdesk_purge_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _conversation(url: str, *, closed: bool, idle: timedelta) -> str:
    with session_scope(url) as session:
        conversation = create_conversation(session)
        add_message(session, conversation.id, sender=Sender.CUSTOMER, destination=Destination.LEX, body="hi",
                    status=MessageStatus.DELIVERED)
        add_message(session, conversation.id, sender=Sender.BOT, destination=Destination.CUSTOMER, body="hello")
        attach_connection(session, conversation.id, uuid.uuid4().hex, "edge-0")
        if closed:
            conversation.state = ConversationState.CLOSED
            conversation.closed_at = utcnow() - idle
        session.flush()
        session.execute(update(Conversation).where(Conversation.id == conversation.id)
                        .values(updated_at=utcnow() - idle))
        return conversation.id


def _exists(url: str) -> dict[str, int]:
    """Conversation id → its message count, for every conversation left."""
    with session_scope(url) as session:
        counts: dict[str, int] = {conversation_id: n for conversation_id, n in session.execute(
            select(Message.conversation_id, func.count()).group_by(Message.conversation_id))}
        return {c: counts.get(c, 0) for c in session.scalars(select(Conversation.id))}


def _purge(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")}
    environ.update({"LEXDESK_STATE_DIR": str(tmp_path / "state"), "LEXDESK_DATABASE_URL": url})
    return subprocess.run([sys.executable, "-m", "lexdesk", "purge", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_purge_counts_with_dry_run_then_deletes_only_old_closed_conversations(database: str, tmp_path: Path) -> None:
    old = {_conversation(database, closed=True, idle=timedelta(days=days)) for days in (91, 120, 365)}
    recent = _conversation(database, closed=True, idle=timedelta(days=30))
    still_open = _conversation(database, closed=False, idle=timedelta(days=365))
    everything = _exists(database)

    dry = _purge(database, tmp_path, "--older-than", "90d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 3 closed conversations"), dry.stdout
    assert "(6 messages, 3 connections)" in dry.stdout
    assert _exists(database) == everything  # a dry run deletes nothing

    done = _purge(database, tmp_path, "--older-than", "90d", "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted 3 closed conversations"), done.stdout
    assert _exists(database) == {recent: 2, still_open: 2}
    assert not old & set(_exists(database))


def test_a_conversation_another_transaction_holds_is_skipped_not_waited_for(database: str, tmp_path: Path) -> None:
    held, _free = (_conversation(database, closed=True, idle=timedelta(hours=13)) for _ in range(2))
    plain_url = database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain_url) as other:
        other.execute("SELECT id FROM conversations WHERE id = %s FOR UPDATE", (held,))
        done = _purge(database, tmp_path, "--older-than", "12h")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("deleted 1 closed conversations"), done.stdout
        other.rollback()
    assert set(_exists(database)) == {held}
    assert _purge(database, tmp_path, "--older-than", "12h").stdout.startswith("deleted 1 ")
    assert _exists(database) == {}


@pytest.mark.parametrize("age", ["90", "0d", "3w", "soon"])
def test_an_age_it_cannot_read_is_a_usage_error_that_deletes_nothing(database: str, tmp_path: Path,
                                                                     age: str) -> None:
    old = _conversation(database, closed=True, idle=timedelta(days=400))
    result = _purge(database, tmp_path, "--older-than", age)
    assert result.returncode == 2
    assert "--older-than" in result.stderr
    assert old in _exists(database)
