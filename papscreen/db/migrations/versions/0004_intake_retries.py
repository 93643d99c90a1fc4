"""Intake retries: files whose ingest failed for a cause that may pass, and when to try them again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intake_retries",
        sa.Column("path_key", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("path_key", name=op.f("pk_intake_retries")),
    )
    op.create_index(op.f("ix_intake_retries_next_attempt_at"), "intake_retries", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_intake_retries_next_attempt_at"), table_name="intake_retries")
    op.drop_table("intake_retries")
