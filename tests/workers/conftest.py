"""Consumer-level tests: task functions called directly, in this process, against a fresh SQLite
database, kombu's in-memory broker (what the tasks publish is inspected, not consumed), and the real
emulators over HTTP."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulators.lex.app import create_app as create_lex
from emulators.talkdesk.app import create_app as create_talkdesk
from emulators.talkdesk.config import EmulatorConfig
from tools.harness.servers import serve_asgi

# The Celery app is built once per process from the settings in force at import: give it the
# in-memory broker before anything imports workers/.
os.environ["LEXDESK_BROKER_URL"] = "memory://"
os.environ["LEXDESK_DATA_KEY"] = secrets.token_urlsafe(16)


@dataclass
class Env:
    database_url: str
    lex_url: str
    talkdesk_url: str


def customer_says(conversation_id: str, client_message_id: str, text: str, connection_id: str | None = None) -> None:
    """What the edge does with a customer's message frame (from socket `connection_id`, whose other tabs
    would be sent its echo)."""
    from shared.inbound import Outcome, customer_message
    from shared.settings import get_settings

    assert customer_message(get_settings(), conversation_id, client_message_id, text, connection_id) == \
        Outcome.STORED


class EdgeQueue:
    """An edge node's queue `edge.<node_id>`, read as the node would: what the tasks published to it."""

    def __init__(self, broker_url: str, node_id: str) -> None:
        from kombu import Connection

        from shared.edge_bus import edge_queue

        self._connection = Connection(broker_url)
        self._queue = edge_queue(node_id).bind(self._connection.default_channel)
        self._queue.declare()
        self._queue.purge()

    def envelopes(self) -> list[dict[str, Any]]:
        received = []
        while (message := self._queue.get(no_ack=True)) is not None:
            received.append(message.payload)
        return received

    def frames(self) -> list[dict[str, Any]]:
        return [frame for envelope in self.envelopes() for frame in envelope["frames"]]

    def close(self) -> None:
        self._connection.release()


@pytest.fixture(scope="session")
def emulator_urls() -> Iterator[tuple[str, str]]:
    with serve_asgi(create_lex()) as lex_url, serve_asgi(create_talkdesk(EmulatorConfig())) as talkdesk_url:
        yield lex_url, talkdesk_url


@pytest.fixture
def env(tmp_path: Path, emulator_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    from shared.clients.factory import lex_client, lex_models, talkdesk_client
    from shared.migrate import upgrade
    from shared.settings import get_settings

    lex_url, talkdesk_url = emulator_urls
    database_url = f"sqlite:///{tmp_path / 'lexdesk.sqlite'}"
    for name, value in {
        "LEXDESK_DATABASE_URL": database_url,
        "LEXDESK_LEX_ENDPOINT_URL": lex_url,
        "LEXDESK_TALKDESK_API_URL": talkdesk_url,
        "LEXDESK_TALKDESK_AUTH_URL": talkdesk_url,
        "LEXDESK_RETRY_BACKOFF_BASE": "0.01",
        "LEXDESK_MAX_ATTEMPTS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    upgrade(database_url)
    caches = (get_settings, lex_client, lex_models, talkdesk_client)
    for cache in caches:
        cache.cache_clear()
    yield Env(database_url, lex_url, talkdesk_url)
    for cache in caches:
        cache.cache_clear()
