"""Orchestration: analysis leases on slides, and validation runs of the champions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("slides") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("compute_lease_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "validation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stage1_model_id", sa.Integer(), nullable=True),
        sa.Column("stage2_model_id", sa.Integer(), nullable=True),
        sa.Column("metrics", JSON_TYPE, nullable=False),
        sa.Column("drift", JSON_TYPE, nullable=False),
        sa.Column("drift_flagged", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["stage1_model_id"],
            ["model_versions.id"],
            name=op.f("fk_validation_runs_stage1_model_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["stage2_model_id"],
            ["model_versions.id"],
            name=op.f("fk_validation_runs_stage2_model_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_runs")),
    )
    op.create_index(op.f("ix_validation_runs_at"), "validation_runs", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_validation_runs_at"), table_name="validation_runs")
    op.drop_table("validation_runs")
    with op.batch_alter_table("slides") as batch:
        batch.drop_column("attempts")
        batch.drop_column("compute_lease_id")
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
