"""Training runs: what was trained on what, how it went, and what the validation gate decided."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from papscreen.db.schema import Decision, ModelStage, TrainingRun, TrainingStatus, utcnow

__all__ = [
    "finish_training_run",
    "last_training_run",
    "list_training_runs",
    "running_training_run",
    "start_training_run",
]


def start_training_run(
    session: Session,
    *,
    stage: ModelStage,
    parameters: dict[str, Any],
    dataset_fingerprint: str | None = None,
    code_fingerprint: str | None = None,
    flow_run_id: str | None = None,
) -> TrainingRun:
    """Open a run in state ``running``; commit it before training so a crash leaves a trace."""
    run = TrainingRun(
        stage=stage,
        parameters=parameters,
        dataset_fingerprint=dataset_fingerprint,
        code_fingerprint=code_fingerprint,
        flow_run_id=flow_run_id,
        status=TrainingStatus.RUNNING,
    )
    session.add(run)
    session.flush()
    return run


def finish_training_run(
    session: Session,
    run_id: int,
    *,
    status: TrainingStatus,
    history: list[Any] | None = None,
    metrics: dict[str, Any] | None = None,
    model_version_id: int | None = None,
    baseline_model_version_id: int | None = None,
    decision: Decision | None = None,
    reason: str | None = None,
    error: str | None = None,
) -> TrainingRun:
    """Close a run with its outcome; ``duration_s`` is measured from its start."""
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise LookupError(f"no training run with id {run_id}")
    run.status = status
    run.finished_at = utcnow()
    run.duration_s = (run.finished_at - run.started_at).total_seconds()
    if history is not None:
        run.history = history
    if metrics is not None:
        run.metrics = metrics
    run.model_version_id = model_version_id
    run.baseline_model_version_id = baseline_model_version_id
    run.decision = decision
    run.reason = reason
    run.error = error
    return run


def last_training_run(
    session: Session, stage: ModelStage, *, statuses: Sequence[TrainingStatus] | None = None
) -> TrainingRun | None:
    """The newest run of a stage, optionally only in some statuses."""
    query = select(TrainingRun).where(TrainingRun.stage == stage).order_by(TrainingRun.id.desc()).limit(1)
    if statuses:
        query = query.where(TrainingRun.status.in_(list(statuses)))
    return session.scalars(query).first()


def list_training_runs(session: Session, stage: ModelStage | None = None, limit: int = 100) -> Sequence[TrainingRun]:
    """Runs, newest first."""
    query = select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)
    if stage is not None:
        query = query.where(TrainingRun.stage == stage)
    return session.scalars(query).all()


def running_training_run(session: Session, stage: ModelStage, *, newer_than: datetime) -> TrainingRun | None:
    """The newest run of a stage still ``running`` that started after ``newer_than``, if any.

    Retraining must never overlap itself; a run older than ``newer_than`` that is still ``running`` is taken as
    crashed (its process died without closing it) and no longer blocks.

    Examples:
        >>> from datetime import timedelta
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     run = start_training_run(s, stage=ModelStage.STAGE2, parameters={})
        ...     hour_ago = utcnow() - timedelta(hours=1)
        ...     running_training_run(s, ModelStage.STAGE2, newer_than=hour_ago) is run
        True
    """
    return session.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.stage == stage,
            TrainingRun.status == TrainingStatus.RUNNING,
            TrainingRun.started_at > newer_than,
        )
        .order_by(TrainingRun.id.desc())
        .limit(1)
    ).first()
