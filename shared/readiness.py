"""The database half of /readyz: a short write transaction, not a SELECT. A database that answers
SELECT 1 may still refuse every write (disk full, SQLite locked by a stuck writer, a read-only replica
after a failover), and a process that cannot write cannot accept a single message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import make_url, text

from shared.db import session_scope

# CURRENT_TIMESTAMP on both: PostgreSQL's now(), SQLite's 'YYYY-MM-DD HH:MM:SS' (which SQLAlchemy reads).
UPDATE = "UPDATE readiness SET checked_at = CURRENT_TIMESTAMP WHERE id = 1"
INSERT = "INSERT INTO readiness (id, checked_at) VALUES (1, CURRENT_TIMESTAMP)"


def check_database_writable(url: str, timeout: float) -> None:
    """Return if the database took a write transaction within about `timeout` seconds; raise otherwise."""
    if url.startswith("sqlite"):
        _check_sqlite(url, timeout)
        return
    milliseconds = max(1, int(timeout * 1000))
    with session_scope(url) as session:
        # Bounded waits, for this transaction only: a lock held elsewhere is "not ready", not a hang.
        session.execute(text(f"SET LOCAL lock_timeout = {milliseconds}"))
        session.execute(text(f"SET LOCAL statement_timeout = {milliseconds}"))
        if session.execute(text(UPDATE)).rowcount == 0:
            session.execute(text(INSERT))


def _check_sqlite(url: str, timeout: float) -> None:
    # Its own connection, with its own short busy timeout (the app's engine waits 30 s for the lock);
    # mode=rw, so that a missing file is an error and not a new, empty database.
    database = make_url(url).database or ""
    uri = Path(database).resolve().as_uri() + "?mode=rw"
    connection = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        if connection.execute(UPDATE).rowcount == 0:
            connection.execute(INSERT)
        connection.execute("COMMIT")
    finally:
        connection.close()  # rolls back whatever did not commit


def describe(exc: BaseException) -> str:
    """The driver's own words, on one short line (SQLAlchemy adds the statement and a link)."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"[:200]
