"""The embedded broker (kombu's SQLAlchemy transport on SQLite, shared/embedded_broker.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kombu import Connection, Queue

from shared.embedded_broker import install, purge_consumed


def test_consumed_messages_are_purged_and_waiting_ones_kept(tmp_path: Path) -> None:
    install()
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    queue = Queue("purge-test")
    with Connection(url) as connection:
        producer = connection.Producer()
        for n in range(5):
            producer.publish({"n": n}, routing_key="purge-test", declare=[queue])
        simple = connection.SimpleQueue(queue)
        for _ in range(3):
            simple.get(timeout=5).ack()
        simple.close()

    def rows() -> dict[bool, int]:
        with sqlite3.connect(tmp_path / "broker.sqlite") as db:
            return {bool(v): n for v, n in db.execute("SELECT visible, count(*) FROM kombu_message GROUP BY visible")}

    assert rows() == {True: 2, False: 3}
    assert purge_consumed(url, older_than=3600) == 0  # consumed just now: kept for now
    assert purge_consumed(url, older_than=-1) == 3
    assert rows() == {True: 2}
    with sqlite3.connect(tmp_path / "broker.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_purge_ignores_other_brokers(tmp_path: Path) -> None:
    assert purge_consumed("amqp://guest:guest@127.0.0.1:5672//") == 0
    assert purge_consumed(f"sqla+sqlite:///{tmp_path / 'never-used.sqlite'}") == 0
