"""Engines and sessions. One engine per process and URL; SQLite gets the settings that make it safe
for several processes (WAL, a busy timeout, and BEGIN IMMEDIATE so a writer never has to upgrade a
read lock, which SQLite answers with an immediate 'database is locked')."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or refused us; the message is one line naming the setting."""


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # The file's folder must exist (shared/settings.py checks it): a typo must not become a new,
        # empty database somewhere else.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _make_sqlite_safe(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def check_database(url: str, timeout: float = 5.0) -> None:
    """Connect once, so that a process that cannot work without the database says why in one line
    (closed port, unknown host, bad user or password, unreadable file) instead of a traceback."""
    connect_args: dict[str, Any] = {} if url.startswith("sqlite") else {"connect_timeout": int(max(timeout, 1))}
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"LEXDESK_DATABASE_URL: cannot use {shown}: {_first_line(exc)}") from exc
    finally:
        engine.dispose()


def _first_line(exc: SQLAlchemyError) -> str:
    # The driver's message, without SQLAlchemy's wrapping and background links; psycopg puts the
    # server's answer ("password authentication failed", "Connection refused") on its first lines.
    cause = exc.orig if getattr(exc, "orig", None) is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return " ".join(lines[:2])[:300] if lines else type(cause).__name__


def _make_sqlite_safe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # read_scope's transactions only read: a deferred BEGIN takes no write lock, so under WAL they
        # neither wait for a writer nor make one wait.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception (which propagates)."""
    with _session_factory(url).begin() as session:
        yield session


READ_ONLY = "lexdesk_read_only"  # execution option: the transaction will not write (see _on_begin)


@lru_cache(maxsize=8)
def _read_session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url).execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def read_scope(url: str) -> Iterator[Session]:
    """A transaction that only reads. On SQLite it takes no write lock (session_scope's BEGIN IMMEDIATE
    does, for every transaction); on PostgreSQL it is an ordinary transaction. Writing in it on SQLite
    may fail with 'database is locked': do not."""
    with _read_session_factory(url).begin() as session:
        yield session


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
