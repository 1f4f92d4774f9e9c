"""Where a harnessed system stores its data: a throwaway SQLite file and embedded broker (one worker
for every queue, the shape of `lexdesk up`), or a throwaway database and vhost on this machine's
PostgreSQL and RabbitMQ (a worker per queue, the production shape). Whatever a run creates, it
removes, so leftovers of one run cannot explain a failure of the next. Used by bench and fuzz."""

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
    database: str | None = None  # the PostgreSQL database, to find its backends' processes
    rabbitmq: bool = False


@contextlib.contextmanager
def backend(name: str, workdir: Path, label: str = "run") -> Iterator[Backend]:
    """Yield the URLs for `name`; whatever was created for the run is removed afterwards. `label`
    names the throwaway database and vhost (lexdesk_<label>_<random>), so a leftover says whose it is."""
    if name == "embedded":
        # One worker process for every queue: the one-machine default of `lexdesk up`.
        yield Backend(name, f"sqlite:///{workdir / 'lexdesk.sqlite'}", f"sqla+sqlite:///{workdir / 'broker.sqlite'}",
                      ("routing,lex,talkdesk,timers",))
        return
    if name != "postgres":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    import psycopg

    suffix = secrets.token_hex(4)
    database, vhost = f"lexdesk_{label}_{suffix}", f"lexdesk-{label}-{suffix}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        _rabbitmqctl("add_vhost", vhost)
        try:
            _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            # The production shape: one worker process per queue.
            yield Backend(name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
                          f"amqp://guest:guest@{RABBITMQ_HOST}/{vhost}", ("routing", "lex", "talkdesk", "timers"),
                          database=database, rabbitmq=True)
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
