"""conversations.leave_message_requested_at, left_message_at: messages left outside business hours

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("leave_message_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("left_message_at", sa.DateTime(timezone=True), nullable=True))
        # The opening's hand-over reads the conversations with a left message, oldest first.
        batch.create_index("ix_conversations_left_message", ["left_message_at"])


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_index("ix_conversations_left_message")
        batch.drop_column("left_message_at")
        batch.drop_column("leave_message_requested_at")
