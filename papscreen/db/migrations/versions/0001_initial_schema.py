"""Initial schema: slides, analyses, cells, model registry, training runs, append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Migrations never import papscreen's ORM classes, so they keep working when the code moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

AUDIT_APPEND_ONLY_SQLITE = [
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
]
AUDIT_APPEND_ONLY_POSTGRESQL = [
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]


def _audit_triggers(create: bool) -> None:
    dialect = op.get_bind().dialect.name
    if create:
        statements = AUDIT_APPEND_ONLY_POSTGRESQL if dialect == "postgresql" else AUDIT_APPEND_ONLY_SQLITE
    elif dialect == "postgresql":
        statements = [
            "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
            "DROP FUNCTION IF EXISTS audit_log_append_only()",
        ]
    else:
        statements = ["DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete"]
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=True),
        sa.Column("details", JSON_TYPE, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_log_entity", ["entity_type", "entity_id"], unique=False)

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "stage", sa.Enum("stage1", "stage2", name="modelstage", native_enum=False, length=16), nullable=False
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("architecture", sa.String(length=64), nullable=False),
        sa.Column("file_path", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("metrics", JSON_TYPE, nullable=False),
        sa.Column("card", JSON_TYPE, nullable=False),
        sa.Column(
            "status",
            sa.Enum("candidate", "champion", "retired", "rejected", name="modelstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("sha256", name=op.f("uq_model_versions_sha256")),
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_versions_stage"), ["stage"], unique=False)
        batch_op.create_index(batch_op.f("ix_model_versions_status"), ["status"], unique=False)
        batch_op.create_index(
            "uq_model_versions_one_champion_per_stage",
            ["stage"],
            unique=True,
            sqlite_where=sa.text("status = 'champion'"),
            postgresql_where=sa.text("status = 'champion'"),
        )

    op.create_table(
        "slides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("original_name", sa.String(length=512), nullable=False),
        sa.Column("original_path", sa.String(length=2048), nullable=True),
        sa.Column("stored_path", sa.String(length=2048), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "processing",
                "done",
                "failed",
                "quarantined",
                "duplicate",
                name="slidestatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duplicate_of_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stage1_model_id", sa.Integer(), nullable=True),
        sa.Column("stage2_model_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("adequacy", sa.String(length=32), nullable=True),
        sa.Column("abnormal_score", sa.Double(), nullable=True),
        sa.Column("cell_count", sa.Integer(), nullable=True),
        sa.Column("class_counts", JSON_TYPE, nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["duplicate_of_id"], ["slides.id"], name=op.f("fk_slides_duplicate_of_id_slides"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["stage1_model_id"],
            ["model_versions.id"],
            name=op.f("fk_slides_stage1_model_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["stage2_model_id"],
            ["model_versions.id"],
            name=op.f("fk_slides_stage2_model_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slides")),
    )
    with op.batch_alter_table("slides", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slides_abnormal_score"), ["abnormal_score"], unique=False)
        batch_op.create_index(batch_op.f("ix_slides_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_slides_sha256"), ["sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_slides_status"), ["status"], unique=False)
        batch_op.create_index(
            "uq_slides_sha256_first_arrival",
            ["sha256"],
            unique=True,
            sqlite_where=sa.text("duplicate_of_id IS NULL"),
            postgresql_where=sa.text("duplicate_of_id IS NULL"),
        )

    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "stage", sa.Enum("stage1", "stage2", name="modelstage", native_enum=False, length=16), nullable=False
        ),
        sa.Column(
            "status",
            sa.Enum("running", "succeeded", "failed", "skipped", name="trainingstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("parameters", JSON_TYPE, nullable=False),
        sa.Column("history", JSON_TYPE, nullable=False),
        sa.Column("metrics", JSON_TYPE, nullable=False),
        sa.Column("dataset_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("code_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("baseline_model_version_id", sa.Integer(), nullable=True),
        sa.Column(
            "decision",
            sa.Enum("promoted", "rejected", "skipped", name="decision", native_enum=False, length=16),
            nullable=True,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["baseline_model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_training_runs_baseline_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_training_runs_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
    )
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_runs_stage"), ["stage"], unique=False)
        batch_op.create_index(batch_op.f("ix_training_runs_started_at"), ["started_at"], unique=False)

    op.create_table(
        "analyses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slide_id", sa.Integer(), nullable=False),
        sa.Column("stage1_model_id", sa.Integer(), nullable=False),
        sa.Column("stage2_model_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("running", "done", "failed", name="analysisstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("summary", JSON_TYPE, nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["slide_id"], ["slides.id"], name=op.f("fk_analyses_slide_id_slides"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["stage1_model_id"],
            ["model_versions.id"],
            name=op.f("fk_analyses_stage1_model_id_model_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["stage2_model_id"],
            ["model_versions.id"],
            name=op.f("fk_analyses_stage2_model_id_model_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analyses")),
        sa.UniqueConstraint(
            "slide_id",
            "stage1_model_id",
            "stage2_model_id",
            name=op.f("uq_analyses_slide_id_stage1_model_id_stage2_model_id"),
        ),
    )
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analyses_slide_id"), ["slide_id"], unique=False)

    op.create_table(
        "cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.Column("slide_id", sa.Integer(), nullable=False),
        sa.Column("x", sa.Double(), nullable=False),
        sa.Column("y", sa.Double(), nullable=False),
        sa.Column("box_x0", sa.Integer(), nullable=False),
        sa.Column("box_y0", sa.Integer(), nullable=False),
        sa.Column("box_x1", sa.Integer(), nullable=False),
        sa.Column("box_y1", sa.Integer(), nullable=False),
        sa.Column("stage1_score", sa.Double(), nullable=False),
        sa.Column("predicted_class", sa.String(length=8), nullable=False),
        sa.Column("probabilities", JSON_TYPE, nullable=False),
        sa.Column("suspicion", sa.Double(), nullable=False),
        sa.Column("reviewer_label", sa.String(length=8), nullable=True),
        sa.Column("reviewer", sa.String(length=128), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["analysis_id"], ["analyses.id"], name=op.f("fk_cells_analysis_id_analyses"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], name=op.f("fk_cells_slide_id_slides"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cells")),
    )
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cells_analysis_id"), ["analysis_id"], unique=False)
        batch_op.create_index("ix_cells_reviewer_label", ["reviewer_label"], unique=False)
        batch_op.create_index("ix_cells_slide_id_suspicion", ["slide_id", "suspicion"], unique=False)

    _audit_triggers(create=True)


def downgrade() -> None:
    _audit_triggers(create=False)
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_index("ix_cells_slide_id_suspicion")
        batch_op.drop_index("ix_cells_reviewer_label")
        batch_op.drop_index(batch_op.f("ix_cells_analysis_id"))

    op.drop_table("cells")
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analyses_slide_id"))

    op.drop_table("analyses")
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_runs_started_at"))
        batch_op.drop_index(batch_op.f("ix_training_runs_stage"))

    op.drop_table("training_runs")
    with op.batch_alter_table("slides", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_slides_sha256_first_arrival",
            sqlite_where=sa.text("duplicate_of_id IS NULL"),
            postgresql_where=sa.text("duplicate_of_id IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_slides_status"))
        batch_op.drop_index(batch_op.f("ix_slides_sha256"))
        batch_op.drop_index(batch_op.f("ix_slides_received_at"))
        batch_op.drop_index(batch_op.f("ix_slides_abnormal_score"))

    op.drop_table("slides")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_model_versions_one_champion_per_stage",
            sqlite_where=sa.text("status = 'champion'"),
            postgresql_where=sa.text("status = 'champion'"),
        )
        batch_op.drop_index(batch_op.f("ix_model_versions_status"))
        batch_op.drop_index(batch_op.f("ix_model_versions_stage"))

    op.drop_table("model_versions")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_entity")
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))

    op.drop_table("audit_log")
