"""Validation runs: the champions re-scored night after night, and what the recent slides look like."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from papscreen.db.schema import Analysis, Cell, Slide, SlideStatus, ValidationRun

__all__ = ["list_validation_runs", "recent_predictions", "record_validation_run"]


def record_validation_run(
    session: Session,
    *,
    stage1_model_id: int | None,
    stage2_model_id: int | None,
    metrics: dict[str, Any],
    drift: dict[str, Any],
    drift_flagged: bool,
    notes: str | None = None,
    flow_run_id: str | None = None,
) -> ValidationRun:
    """Store one night's metrics per dataset and its drift check; the history is what the dashboard plots.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     run = record_validation_run(s, stage1_model_id=None, stage2_model_id=None,
        ...                                 metrics={"DB_4": {"macro_f1": 0.9}}, drift={}, drift_flagged=False)
        ...     run.id, run.metrics["DB_4"]["macro_f1"]
        (1, 0.9)
    """
    run = ValidationRun(
        stage1_model_id=stage1_model_id,
        stage2_model_id=stage2_model_id,
        metrics=metrics,
        drift=drift,
        drift_flagged=drift_flagged,
        notes=notes,
        flow_run_id=flow_run_id,
    )
    session.add(run)
    session.flush()
    return run


def list_validation_runs(session: Session, limit: int = 100) -> Sequence[ValidationRun]:
    """Validation runs, newest first."""
    return session.scalars(
        select(ValidationRun).order_by(ValidationRun.at.desc(), ValidationRun.id.desc()).limit(limit)
    ).all()


def recent_predictions(session: Session, last_n_slides: int) -> tuple[dict[str, int], np.ndarray, int]:
    """Predicted classes and abnormal scores of the cells of the newest ``last_n_slides`` analysed slides.

    Only each slide's *current* analysis counts (the one by the models its summary names), so a slide
    re-scored by a new champion is counted once, as it is now reported.

    Returns:
        (cells per predicted class, each cell's suspicion as a float array, number of slides they came from).

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     recent_predictions(s, 10)
        ({}, array([], dtype=float64), 0)
    """
    if last_n_slides < 1:
        raise ValueError(f"last_n_slides must be at least 1, got {last_n_slides}")
    newest = (
        select(Slide.id)
        .where(Slide.status == SlideStatus.DONE, Slide.stage1_model_id.is_not(None), Slide.stage2_model_id.is_not(None))
        .order_by(Slide.finished_at.desc().nulls_last(), Slide.id.desc())
        .limit(last_n_slides)
        .subquery()
    )
    current = (
        select(Analysis.id, Analysis.slide_id)
        .join(newest, newest.c.id == Analysis.slide_id)
        .join(
            Slide,
            and_(
                Slide.id == Analysis.slide_id,
                Slide.stage1_model_id == Analysis.stage1_model_id,
                Slide.stage2_model_id == Analysis.stage2_model_id,
            ),
        )
        .subquery()
    )
    rows = session.execute(
        select(Cell.predicted_class, Cell.suspicion, current.c.slide_id).join(current, current.c.id == Cell.analysis_id)
    ).all()
    counts = Counter(row.predicted_class for row in rows)
    suspicion = np.array([row.suspicion for row in rows], dtype=np.float64)
    slides = int(session.scalar(select(func.count()).select_from(current)) or 0)
    return dict(sorted(counts.items())), suspicion, slides
