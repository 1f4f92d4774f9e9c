"""Where the fuzzed system stores its data: a throwaway SQLite file and embedded broker, or a
throwaway database and vhost on this machine's PostgreSQL and RabbitMQ. Whatever a run creates, it
removes; nothing is shared with another run, so leftovers of one cannot explain a failure of the next."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RABBITMQ_HOST = "127.0.0.1:5672"
BACKENDS = ("embedded", "postgres")


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    broker_url: str
    worker_queues: tuple[str, ...]


@contextlib.contextmanager
def backend(name: str, workdir: Path) -> Iterator[Backend]:
    """Yield the URLs for `name`; the database and vhost made for the run are dropped afterwards."""
    if name == "embedded":
        # One worker process for every queue: the one-machine shape of `lexdesk up`.
        yield Backend(name, f"sqlite:///{workdir / 'lexdesk.sqlite'}", f"sqla+sqlite:///{workdir / 'broker.sqlite'}",
                      ("routing,lex,talkdesk,timers",))
        return
    if name != "postgres":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    import psycopg

    suffix = secrets.token_hex(4)
    database, vhost = f"lexdesk_fuzz_{suffix}", f"lexdesk-fuzz-{suffix}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        _rabbitmqctl("add_vhost", vhost)
        try:
            _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            # The production shape: one worker process per queue.
            yield Backend(name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
                          f"amqp://guest:guest@{RABBITMQ_HOST}/{vhost}", ("routing", "lex", "talkdesk", "timers"))
        finally:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60, check=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed (is RabbitMQ running on {RABBITMQ_HOST}?): "
                           f"{result.stderr.strip() or result.stdout.strip()}")
