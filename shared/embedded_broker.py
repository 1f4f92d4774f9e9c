"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, made fit for a chat.

- kombu hands every transport option of this transport to `create_engine`, so its polling interval
  (1 s by default: seconds of latency on each hop of a chat message) cannot be set through options;
  this subclass sets it instead, and `sqla+` URLs resolve to it (kombu's alias table is the
  documented way to plug in a transport).
- The broker file gets WAL and a busy timeout, like the database: several processes share it.
- kombu never deletes consumed messages (it marks them invisible), and every poll of an empty queue
  scans them: `purge_consumed` (run by the sweep) deletes them.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import Engine, event

SQLITE_PREFIX = "sqla+sqlite:///"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self) -> Engine:
        engine: Engine = super()._engine_from_config()
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel
    polling_interval = 0.05


def install() -> None:
    TRANSPORT_ALIASES["sqla"] = f"{__name__}:Transport"


def purge_consumed(broker_url: str, older_than: float = 60.0) -> int:
    """Delete messages consumed more than `older_than` seconds ago from an embedded SQLite broker.
    (A consumed but unacknowledged message is restored by kombu from memory, not from its row.)"""
    if not broker_url.startswith(SQLITE_PREFIX):
        return 0
    path = broker_url[len(SQLITE_PREFIX):]
    # kombu stamps consumption with the local naive time, in SQLAlchemy's SQLite format.
    cutoff = (datetime.now() - timedelta(seconds=older_than)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(path, timeout=30) as connection:
        try:
            return connection.execute("DELETE FROM kombu_message WHERE visible = 0 AND timestamp < ?",
                                      (cutoff,)).rowcount
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
