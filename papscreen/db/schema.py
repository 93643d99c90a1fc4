"""The database schema: SQLAlchemy 2 typed ORM classes, identical on SQLite and PostgreSQL.

Tables:

* ``slides``: one row per scan that arrived, good or bad. A scan's content (sha256) is claimed once: the
  first arrival owns it (a partial unique index on ``sha256`` where ``duplicate_of_id`` is null); a later
  copy, under any name, is a row of status ``duplicate`` pointing at the first. The slide also carries a
  summary of its current result (category, abnormal score, per-class counts, the models that made it).
* ``analyses``: one row per (slide, stage-1 model, stage-2 model). Re-running with the same models replaces
  that analysis' cells; a re-score with new models adds an analysis, so every result keeps its models.
* ``cells``: the cells an analysis found and graded, with a reviewer's correction when there is one.
* ``model_versions``: the registry; at most one champion per stage (a partial unique index).
* ``training_runs``: every (re)training, its parameters, history, metrics, decision and reason.
* ``validation_runs``: each re-evaluation of the champions (validation and reference sets) and its drift check.
* ``audit_log``: append-only; the migration adds triggers that refuse UPDATE and DELETE.
* ``work_locks``: named locks shared by every process and host (one intake pass ingests at a time).

A slide being analysed carries a lease (``lease_owner``: host and process, ``lease_expires_at``) that the
analysis renews; a slide whose lease ran out, or whose owner process on this host is gone, is queued again.

Schema changes go through Alembic (``papscreen db upgrade``); ``alembic check`` must stay clean.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, BigInteger, Dialect, ForeignKey, Index, MetaData, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Analysis",
    "AnalysisStatus",
    "AuditEvent",
    "Base",
    "Cell",
    "Decision",
    "ModelStage",
    "ModelStatus",
    "ModelVersion",
    "Slide",
    "SlideStatus",
    "TrainingRun",
    "TrainingStatus",
    "ValidationRun",
    "WorkLock",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can refer to them on both databases."""


def utcnow() -> datetime:
    """Timezone-aware now in UTC; every timestamp papscreen stores is UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use papscreen.db.schema.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class SlideStatus(enum.StrEnum):
    """Where a scan is in its life."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


class AnalysisStatus(enum.StrEnum):
    """State of one analysis of a slide."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ModelStage(enum.StrEnum):
    """The two stages of the screening model."""

    STAGE1 = "stage1"
    STAGE2 = "stage2"


class ModelStatus(enum.StrEnum):
    """Life of a model version in the registry."""

    CANDIDATE = "candidate"
    CHAMPION = "champion"
    RETIRED = "retired"
    REJECTED = "rejected"


class TrainingStatus(enum.StrEnum):
    """State of a training run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Decision(enum.StrEnum):
    """What a training run's validation gate decided."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    PENDING_APPROVAL = "pending approval"  # passed the gate; waits for a person (promotion policy "approve")


def _enum(cls: type[enum.StrEnum]) -> sa.Enum:
    """Enums are stored as plain strings (no native type, no CHECK) so adding a value needs no DDL."""
    return sa.Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base with the naming convention and the UTC/JSON type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class ModelVersion(Base):
    """A trained model file registered for a stage; at most one champion per stage."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[ModelStage] = mapped_column(_enum(ModelStage), index=True)
    name: Mapped[str] = mapped_column(String(128))
    architecture: Mapped[str] = mapped_column(String(64))
    file_path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ModelStatus] = mapped_column(_enum(ModelStatus), default=ModelStatus.CANDIDATE, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    notes: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "uq_model_versions_one_champion_per_stage",
            "stage",
            unique=True,
            sqlite_where=sa.text("status = 'champion'"),
            postgresql_where=sa.text("status = 'champion'"),
        ),
    )


class Slide(Base):
    """A scan that arrived in the intake, with the summary of its current result."""

    __tablename__ = "slides"

    id: Mapped[int] = mapped_column(primary_key=True)
    original_name: Mapped[str] = mapped_column(String(512))
    original_path: Mapped[str | None] = mapped_column(String(2048))
    stored_path: Mapped[str | None] = mapped_column(String(2048))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str | None] = mapped_column(String(32))
    width: Mapped[int | None]
    height: Mapped[int | None]
    status: Mapped[SlideStatus] = mapped_column(_enum(SlideStatus), default=SlideStatus.QUEUED, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("slides.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    stage1_model_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    stage2_model_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    category: Mapped[str | None] = mapped_column(String(32))
    adequacy: Mapped[str | None] = mapped_column(String(32))
    abnormal_score: Mapped[float | None] = mapped_column(index=True)
    cell_count: Mapped[int | None]
    class_counts: Mapped[dict[str, Any] | None]
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    compute_lease_id: Mapped[str | None] = mapped_column(
        String(64), doc="The Prefect concurrency lease the analysis holds (released if its worker dies)."
    )
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    progress_fraction: Mapped[float | None] = mapped_column(
        doc="How far the running analysis is, 0-1 (cleared when it ends)."
    )
    progress_note: Mapped[str | None] = mapped_column(
        String(200), doc='What the running analysis is doing, e.g. "stage 1: 120 of 480 tiles, about 50 s left".'
    )
    interpretation: Mapped[str | None] = mapped_column(
        String(32), doc="The interpretation signed so far (REPORT_INTERPRETATIONS), None before any sign-out step."
    )
    signout_status: Mapped[str | None] = mapped_column(
        String(32), index=True, doc="None, `awaiting pathologist` or `signed out` (SignoutStatus)."
    )
    signed_out_by: Mapped[str | None] = mapped_column(String(128))
    signed_out_at: Mapped[datetime | None]

    duplicate_of: Mapped[Slide | None] = relationship(remote_side=[id])
    stage1_model: Mapped[ModelVersion | None] = relationship(foreign_keys=[stage1_model_id])
    stage2_model: Mapped[ModelVersion | None] = relationship(foreign_keys=[stage2_model_id])
    analyses: Mapped[list[Analysis]] = relationship(
        back_populates="slide", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index(
            "uq_slides_sha256_first_arrival",
            "sha256",
            unique=True,
            sqlite_where=sa.text("duplicate_of_id IS NULL"),
            postgresql_where=sa.text("duplicate_of_id IS NULL"),
        ),
    )


class Analysis(Base):
    """One analysis of a slide by one pair of models; unique per (slide, stage-1 model, stage-2 model)."""

    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    slide_id: Mapped[int] = mapped_column(ForeignKey("slides.id", ondelete="CASCADE"), index=True)
    stage1_model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    stage2_model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    status: Mapped[AnalysisStatus] = mapped_column(_enum(AnalysisStatus), default=AnalysisStatus.RUNNING)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None]
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)

    slide: Mapped[Slide] = relationship(back_populates="analyses")
    cells: Mapped[list[Cell]] = relationship(
        back_populates="analysis", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (UniqueConstraint("slide_id", "stage1_model_id", "stage2_model_id"),)


class Cell(Base):
    """A cell found by stage 1 and graded by stage 2, in level-0 pixel coordinates."""

    __tablename__ = "cells"

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), index=True)
    slide_id: Mapped[int] = mapped_column(ForeignKey("slides.id", ondelete="CASCADE"))
    x: Mapped[float]
    y: Mapped[float]
    box_x0: Mapped[int]
    box_y0: Mapped[int]
    box_x1: Mapped[int]
    box_y1: Mapped[int]
    stage1_score: Mapped[float]
    predicted_class: Mapped[str] = mapped_column(String(8))
    probabilities: Mapped[dict[str, Any]]
    suspicion: Mapped[float] = mapped_column(doc="Probability that the cell is abnormal (1 - P(NILM)).")
    reviewer_label: Mapped[str | None] = mapped_column(String(8))
    reviewer: Mapped[str | None] = mapped_column(String(128))
    reviewed_at: Mapped[datetime | None]

    analysis: Mapped[Analysis] = relationship(back_populates="cells")

    __table_args__ = (
        Index("ix_cells_slide_id_suspicion", "slide_id", "suspicion"),
        Index("ix_cells_reviewer_label", "reviewer_label"),
    )


class TrainingRun(Base):
    """One training of a stage: what went in, how it went, and what the validation gate decided."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[ModelStage] = mapped_column(_enum(ModelStage), index=True)
    status: Mapped[TrainingStatus] = mapped_column(_enum(TrainingStatus), default=TrainingStatus.RUNNING)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    history: Mapped[list[Any]] = mapped_column(default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64))
    code_fingerprint: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None]
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    baseline_model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    decision: Mapped[Decision | None] = mapped_column(_enum(Decision))
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))

    model_version: Mapped[ModelVersion | None] = relationship(foreign_keys=[model_version_id])
    baseline_model_version: Mapped[ModelVersion | None] = relationship(foreign_keys=[baseline_model_version_id])


class ValidationRun(Base):
    """One re-evaluation of the champions: metrics per dataset, and whether the recent slides drifted."""

    __tablename__ = "validation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stage1_model_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    stage2_model_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    drift: Mapped[dict[str, Any]] = mapped_column(default=dict)
    drift_flagged: Mapped[bool] = mapped_column(default=False)
    notes: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))


class WorkLock(Base):
    """A named lock that processes on any host share through the database (e.g. one intake pass at a time).

    Held for ``expires_at``; the holder renews it as it works, and a lock whose holder died is taken over
    once it expires (at once when the holder was a process of the same host that no longer exists).
    """

    __tablename__ = "work_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(160))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class IntakeRetry(Base):
    """A file in the intake folder whose ingest failed for a cause that may pass (a full disk, no permission yet).

    The file stays where it is; the intake tries it again at ``next_attempt_at``, waiting twice as long after
    each failure (up to a cap), so one file that keeps failing does not take every pass's time. The row goes
    once the file is ingested, quarantined or gone. Keyed by the sha256 of the path's bytes, which any path
    fits, whatever its length or encoding.
    """

    __tablename__ = "intake_retries"

    path_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(2048))
    name: Mapped[str] = mapped_column(String(512))
    failures: Mapped[int] = mapped_column(default=1)
    last_error: Mapped[str] = mapped_column(String(1000))
    first_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)


class SignoutStatus(enum.StrEnum):
    """Where a slide's report stands."""

    AWAITING_PATHOLOGIST = "awaiting pathologist"
    SIGNED_OUT = "signed out"


class Signout(Base):
    """One signed step of a slide's report: the screener's, then (for an abnormal slide) the pathologist's."""

    __tablename__ = "signouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    slide_id: Mapped[int] = mapped_column(ForeignKey("slides.id", ondelete="CASCADE"), index=True)
    analysis_id: Mapped[int | None] = mapped_column(ForeignKey("analyses.id", ondelete="SET NULL"))
    step: Mapped[str] = mapped_column(String(32), doc="`screening` or `final`.")
    interpretation: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    signed_by: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """An append-only record of who did what; never updated or deleted (triggers refuse it)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id"),)
