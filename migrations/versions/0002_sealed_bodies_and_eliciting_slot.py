"""sealed bodies and eliciting slot

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 11:58:17.826831
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("eliciting_slot", sa.String(length=100), nullable=True))

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_body", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("sealed_body")

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("eliciting_slot")
