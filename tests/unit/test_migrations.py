"""shared/migrate.py and migrations/: upgrade, downgrade and the models matching the schema, on SQLite and on the
real PostgreSQL. Every test gets its own empty database (the PostgreSQL one is a sibling of `postgres_url`'s,
so downgrading here cannot pull tables from under other tests of the session)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, func, insert, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from shared.db import get_engine
from shared.migrate import alembic_config, downgrade, upgrade
from shared.models import Base, Conversation, Message

TABLES = {"conversations", "messages", "connections", "drain_leases", "outbox"}
CONVERSATIONS = Conversation.__table__
MESSAGES = Message.__table__


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lexdesk.sqlite'}"
        yield url
        get_engine(url).dispose()
        return
    base = make_url(request.getfixturevalue("postgres_url"))
    name = f"{base.database}_mig_{secrets.token_hex(3)}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    yield url
    get_engine(url).dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def version(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


def head(database_url: str) -> str:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    heads = script.get_heads()
    assert len(heads) == 1, f"the migrations must have one head, not {heads}"
    return heads[0]


def new_conversation(conn: Any, conversation_id: str) -> None:
    conn.execute(insert(CONVERSATIONS).values(id=conversation_id, lex_session_id=f"lex-{conversation_id}"))


def new_message(conn: Any, conversation_id: str, seq: int, **values: Any) -> None:
    conn.execute(insert(MESSAGES).values(conversation_id=conversation_id, seq=seq, sender="customer",
                                         destination="lex", body=f"message {seq}", **values))


def test_upgrade_downgrade_upgrade(database_url: str, engine: Engine) -> None:
    latest = head(database_url)
    upgrade(database_url)
    created = tables(engine)
    assert created >= TABLES | {"alembic_version"}
    assert version(engine) == [latest]
    with engine.connect() as conn:
        inspector = inspect(conn)
        assert {c["name"] for c in inspector.get_columns("messages")} == set(MESSAGES.columns.keys())
        assert {c["name"] for c in inspector.get_columns("conversations")} == set(CONVERSATIONS.columns.keys())
        assert {i["name"] for i in inspector.get_indexes("messages")} >= {"ix_messages_outgoing",
                                                                          "ix_messages_dead_letters"}
        assert {i["name"] for i in inspector.get_indexes("connections")} >= {"ix_connections_current",
                                                                             "ix_connections_node_id"}
        assert inspector.get_pk_constraint("drain_leases")["constrained_columns"] == ["conversation_id",
                                                                                       "destination"]

    upgrade(database_url)  # already at head: nothing to do, nothing breaks
    assert version(engine) == [latest]

    downgrade(database_url, "base")
    assert tables(engine) & TABLES == set()
    assert tables(engine) <= {"alembic_version"}
    assert version(engine) == []

    upgrade(database_url, "head")
    assert tables(engine) == created
    assert version(engine) == [latest]


def test_every_revision_downgrades_one_step_and_back(database_url: str, engine: Engine) -> None:
    revisions = [r.revision for r in ScriptDirectory.from_config(alembic_config(database_url)).walk_revisions()]
    assert revisions[-1] == "0001"
    upgrade(database_url)
    for expected in revisions[1:]:  # newest first
        downgrade(database_url, "-1")
        assert version(engine) == [expected]
        assert tables(engine) >= TABLES
    upgrade(database_url)
    assert version(engine) == [revisions[0]]
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_unique_constraints_exist(database_url: str, engine: Engine) -> None:
    upgrade(database_url)
    with engine.connect() as conn:
        constraints = {c["name"]: c["column_names"] for c in inspect(conn).get_unique_constraints("messages")}
    assert constraints == {
        "uq_messages_conversation_seq": ["conversation_id", "seq"],
        "uq_messages_conversation_frame_seq": ["conversation_id", "frame_seq"],
        "uq_messages_client_message_id": ["conversation_id", "client_message_id"],
        "uq_messages_talkdesk_message_id": ["conversation_id", "talkdesk_message_id"],
    }

    with engine.begin() as conn:
        new_conversation(conn, "c-1")
        new_conversation(conn, "c-2")
        new_message(conn, "c-1", 1, client_message_id="m-17")
        new_message(conn, "c-2", 1, client_message_id="m-17")  # another conversation may reuse the id
        new_message(conn, "c-1", 2)  # rows without a client id do not collide
        new_message(conn, "c-1", 3)
        new_message(conn, "c-1", 4, talkdesk_message_id="td-1", frame_seq=1)

    duplicates: list[dict[str, Any]] = [
        {"seq": 10, "client_message_id": "m-17"},
        {"seq": 10, "talkdesk_message_id": "td-1"},
        {"seq": 10, "frame_seq": 1},
        {"seq": 1},
    ]
    for values in duplicates:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            new_message(conn, "c-1", **values)

    with pytest.raises(IntegrityError), engine.begin() as conn:
        new_conversation(conn, "c-3")
        conn.execute(CONVERSATIONS.update().where(CONVERSATIONS.c.id == "c-3").values(talkdesk_conversation_id="t"))
        conn.execute(CONVERSATIONS.update().where(CONVERSATIONS.c.id == "c-1").values(talkdesk_conversation_id="t"))

    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MESSAGES)).scalar_one() == 5
        assert conn.execute(select(func.count()).select_from(CONVERSATIONS)).scalar_one() == 2


def test_deleting_a_conversation_cascades(database_url: str) -> None:
    upgrade(database_url)
    engine = get_engine(database_url)  # the app's engine: SQLite with foreign keys on
    with engine.begin() as conn:
        new_conversation(conn, "c-1")
        new_message(conn, "c-1", 1)
        new_message(conn, "c-1", 2)
    with engine.begin() as conn:
        conn.execute(CONVERSATIONS.delete().where(CONVERSATIONS.c.id == "c-1"))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MESSAGES)).scalar_one() == 0


def test_models_match_the_migration(database_url: str, engine: Engine) -> None:
    upgrade(database_url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []
