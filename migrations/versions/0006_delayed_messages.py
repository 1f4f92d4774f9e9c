"""messages.delayed_at, retry_from: retries bounded by time, and delays reported to the customer

delayed_at: when a message waiting for Lex or Talkdesk was first reported delayed. retry_from: where
LEXDESK_RETRY_FOR counts from for a replayed dead letter.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("delayed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retry_from", sa.DateTime(timezone=True), nullable=True))
        # /readyz and the delayed gauge read the pending rows that have one (a delivered row keeps its
        # delayed_at as history: led by status, the index reaches only the few pending ones).
        batch.create_index("ix_messages_delayed", ["status", "delayed_at", "destination"])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_delayed")
        batch.drop_column("retry_from")
        batch.drop_column("delayed_at")
