"""The optional SQLite state file, so the emulator can be restarted (or crash) without forgetting anything.

Talkdesk does not forget an open conversation when lexdesk restarts; an emulator that did would answer
404 to every agent chat that was open. With `--state-file`, every change is written through at once, in
one small transaction, so what a client was answered is on disk before it reads the answer: a SIGKILL
loses nothing that was acknowledged. Each conversation is kept as one JSON document (its messages and
events included): the emulator only ever reads the file back whole, at start-up.

The file is opened in WAL mode with `synchronous=NORMAL` (a commit survives the process dying; only an
OS crash may lose the last few) and `locking_mode=EXCLUSIVE`, so a second emulator started on the same
file fails at once instead of both overwriting each other's records.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .state import AgentMessage, Conversation, CustomerMessage, StoredResponse, Token

SCHEMA_VERSION = 1
LOCK_TIMEOUT = 2.0
"""Seconds to wait for the file's lock: long enough for a dying predecessor, short enough to fail fast."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    value TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotent (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
"""


class StateFileError(RuntimeError):
    """The state file cannot be used: locked by another emulator, or written by another schema."""


@dataclass
class Snapshot:
    """Everything read back from the file at start-up, in the order it was first written."""

    tokens: list[Token]
    conversations: list[Conversation]
    idempotent: dict[tuple[str, str], StoredResponse]


def conversation_document(conv: Conversation) -> str:
    """The whole conversation, private counters included, as JSON."""
    return json.dumps(dataclasses.asdict(conv), separators=(",", ":"))


def conversation_from_document(document: str) -> Conversation:
    data: dict[str, Any] = json.loads(document)
    data["customer_messages"] = [CustomerMessage(**m) for m in data["customer_messages"]]
    data["agent_messages"] = [AgentMessage(**m) for m in data["agent_messages"]]
    return Conversation(**data)


class StateFile:
    """Write-through storage of the emulator's records; used from the event loop only."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Tokens and transcripts live here: the file is its user's alone (SQLite gives -wal the same mode).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        # The app is built on one thread and served on another (uvicorn, tests); never two at once.
        self._db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            self._prepare()
        except sqlite3.OperationalError as exc:
            self._db.close()
            problem = f"cannot use the state file {self.path}: {exc} (is another emulator using it?)"
            raise StateFileError(problem) from exc
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction():  # takes the exclusive lock, held until close()
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version not in (0, SCHEMA_VERSION):
                raise StateFileError(f"{self.path} has schema version {version}, this emulator knows {SCHEMA_VERSION}")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an error (the connection itself is in autocommit mode)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def load(self) -> Snapshot:
        """Read everything back; expired tokens are dropped on the way."""
        with self._transaction():
            self._db.execute("DELETE FROM tokens WHERE expires_at <= ?", (time.time(),))
        tokens = [Token(*row) for row in self._db.execute("SELECT value, client_id, scope, expires_at FROM tokens")]
        conversations = [
            conversation_from_document(row[0])
            for row in self._db.execute("SELECT document FROM conversations ORDER BY rowid")
        ]
        idempotent = {
            (scope, key): StoredResponse(status_code, json.loads(body))
            for scope, key, status_code, body in self._db.execute(
                "SELECT scope, key, status_code, body FROM idempotent ORDER BY rowid"
            )
        }
        return Snapshot(tokens, conversations, idempotent)

    def save_token(self, token: Token) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO tokens (value, client_id, scope, expires_at) VALUES (?, ?, ?, ?)",
                (token.value, token.client_id, token.scope, token.expires_at),
            )

    def delete_token(self, value: str) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM tokens WHERE value = ?", (value,))

    def save_conversation(self, conv: Conversation, response: tuple[str, str, StoredResponse] | None = None) -> None:
        """The conversation, and the answer kept under an idempotency key, in one transaction: a crash
        cannot keep the effect of a call and lose its key (a retry would then apply it twice)."""
        with self._transaction():
            # An upsert, not INSERT OR REPLACE: the rowid, hence the listing order, stays.
            self._db.execute(
                "INSERT INTO conversations (id, document) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET document = excluded.document",
                (conv.id, conversation_document(conv)),
            )
            if response is not None:
                scope, key, stored = response
                self._db.execute(
                    "INSERT OR REPLACE INTO idempotent (scope, key, status_code, body) VALUES (?, ?, ?, ?)",
                    (scope, key, stored.status_code, json.dumps(stored.body)),
                )

    def delete_conversation(self, conversation_id: str, keys: list[tuple[str, str]]) -> None:
        """Forget a conversation and the idempotent answers that belong to it."""
        with self._transaction():
            self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            self._db.executemany("DELETE FROM idempotent WHERE scope = ? AND key = ?", keys)
