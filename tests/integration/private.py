"""A database and a RabbitMQ vhost of their own, for a test module that runs a second System beside
the session's `system`. Sharing either would mix the two: both have an `edge-0` node queue and
consume the same work queues, and each one's sweep relays and restarts the other's work (with the
other bot, the other settings)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from tests.conftest import PG_ADMIN_URL, RABBITMQ_HOST


@contextmanager
def private_database(label: str) -> Iterator[str]:
    name = f"lexdesk_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True)


@contextmanager
def private_vhost(label: str) -> Iterator[str]:
    vhost = f"lexdesk-{label}-{os.getpid()}-{secrets.token_hex(3)}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
