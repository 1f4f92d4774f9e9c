"""Real services for tests: PostgreSQL and RabbitMQ on this machine (scripts/test.sh starts them).
A missing service fails the run loudly; nothing here skips."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RABBITMQ_HOST = "127.0.0.1:5672"

# Settings are read from the environment; tests build their own, so nothing from the shell leaks in.
for name in [n for n in os.environ if n.startswith("LEXDESK_")]:
    del os.environ[name]


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session on the machine's PostgreSQL."""
    name = f"lexdesk_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _fail(f"PostgreSQL at 127.0.0.1:5432 is required (scripts/test.sh starts it): {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        _fail(f"rabbitmqctl {' '.join(args)} failed (is RabbitMQ running? scripts/test.sh starts it): "
              f"{result.stderr.strip() or result.stdout.strip()}")


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A private vhost on the machine's RabbitMQ, so leftovers of another run cannot leak in."""
    vhost = f"lexdesk-test-{os.getpid()}-{secrets.token_hex(3)}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@{RABBITMQ_HOST}/{vhost}"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
