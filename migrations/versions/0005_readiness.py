"""readiness: the row /readyz writes to prove the database takes writes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    readiness = op.create_table(
        "readiness",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readiness")),
    )
    # The one row: /readyz only updates it (it inserts it again if someone deleted it).
    op.bulk_insert(readiness, [{"id": 1, "checked_at": None}])


def downgrade() -> None:
    op.drop_table("readiness")
