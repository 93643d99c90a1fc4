"""Sign-out: each signed step of a slide's report, and where the report stands on the slide's row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slide_id", sa.Integer(), nullable=False),
        sa.Column("analysis_id", sa.Integer(), nullable=True),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("interpretation", sa.String(length=32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("signed_by", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_id"], ["analyses.id"], name=op.f("fk_signouts_analysis_id_analyses"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["slide_id"], ["slides.id"], name=op.f("fk_signouts_slide_id_slides"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signouts")),
    )
    op.create_index(op.f("ix_signouts_slide_id"), "signouts", ["slide_id"])
    with op.batch_alter_table("slides") as batch:
        batch.add_column(sa.Column("interpretation", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("signout_status", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("signed_out_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("signed_out_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(batch.f("ix_slides_signout_status"), ["signout_status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slides") as batch:
        batch.drop_index(batch.f("ix_slides_signout_status"))
        batch.drop_column("signed_out_at")
        batch.drop_column("signed_out_by")
        batch.drop_column("signout_status")
        batch.drop_column("interpretation")
    op.drop_index(op.f("ix_signouts_slide_id"), table_name="signouts")
    op.drop_table("signouts")
