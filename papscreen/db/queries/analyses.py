"""Analysis results: one transaction stores a slide's cells and summary, replacing a re-run's old cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from papscreen.db.queries.slides import InvalidTransitionError, move_status, require_slide
from papscreen.db.schema import Analysis, AnalysisStatus, Cell, SlideStatus, utcnow

__all__ = [
    "SAME_CELL_PX",
    "CellRecord",
    "LeaseLostError",
    "SummaryRecord",
    "cells_of_slide",
    "current_analysis",
    "store_analysis",
]

SAME_CELL_PX = 2.0
"""A re-run's cell within this many pixels (each axis) of a reviewed cell is the same cell."""


class LeaseLostError(InvalidTransitionError):
    """A worker tried to store a result for a slide it no longer analyses (requeued, quarantined, taken)."""


@dataclass(frozen=True)
class CellRecord:
    """One graded cell as the database stores it (level-0 pixels)."""

    x: float
    y: float
    box_x0: int
    box_y0: int
    box_x1: int
    box_y1: int
    stage1_score: float
    predicted_class: str
    probabilities: dict[str, float]
    suspicion: float


@dataclass(frozen=True)
class SummaryRecord:
    """A slide's summary as the database stores it; ``details`` keeps the rest (timings, gallery ids...)."""

    category: str
    adequacy: str
    abnormal_score: float
    cell_count: int
    class_counts: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)


def store_analysis(
    session: Session,
    *,
    slide_id: int,
    stage1_model_id: int,
    stage2_model_id: int,
    cells: Sequence[CellRecord],
    summary: SummaryRecord,
    duration_s: float | None = None,
    flow_run_id: str | None = None,
    owner: str | None = None,
) -> Analysis:
    """Store a finished analysis and make it the slide's current result, in the caller's transaction.

    Idempotent per (slide, stage-1 model, stage-2 model): a re-run replaces that analysis' cells and never
    adds a second set, but a reviewer's label is never lost: a reviewed cell keeps its row and label, taking
    the new grading of the cell found at the same place (within :data:`SAME_CELL_PX`), and stays even when
    none is. An analysis by other models is kept, so every result stays attributable.

    ``owner``: the analysing worker. When given (as every analysis run does), the result is stored only if the
    slide is still ``processing`` under that worker's lease; otherwise :class:`LeaseLostError` (the slide was
    requeued, quarantined or taken by another worker meanwhile).
    """
    slide = require_slide(session, slide_id)
    if owner is not None and (slide.status != SlideStatus.PROCESSING or slide.lease_owner != owner):
        raise LeaseLostError(
            f"slide {slide_id} is {slide.status.value} (lease: {slide.lease_owner or 'none'}), no longer analysed "
            f"by {owner}: its result is not stored"
        )
    analysis = session.scalars(
        select(Analysis).where(
            Analysis.slide_id == slide_id,
            Analysis.stage1_model_id == stage1_model_id,
            Analysis.stage2_model_id == stage2_model_id,
        )
    ).first()
    if analysis is None:
        analysis = Analysis(slide_id=slide_id, stage1_model_id=stage1_model_id, stage2_model_id=stage2_model_id)
        session.add(analysis)
        session.flush()
    else:
        cells = _keep_reviews(session, analysis.id, cells)
    if cells:
        session.execute(
            insert(Cell),
            [{**asdict(cell), "analysis_id": analysis.id, "slide_id": slide_id} for cell in cells],
        )
    analysis.status = AnalysisStatus.DONE
    analysis.finished_at = utcnow()
    analysis.duration_s = duration_s
    analysis.flow_run_id = flow_run_id
    analysis.error = None
    analysis.summary = asdict(summary)

    if slide.status != SlideStatus.PROCESSING:
        move_status(slide, SlideStatus.PROCESSING)
    move_status(slide, SlideStatus.DONE)
    slide.finished_at = analysis.finished_at
    slide.error = None
    slide.stage1_model_id = stage1_model_id
    slide.stage2_model_id = stage2_model_id
    slide.category = summary.category
    slide.adequacy = summary.adequacy
    slide.abnormal_score = summary.abnormal_score
    slide.cell_count = summary.cell_count
    slide.class_counts = dict(summary.class_counts)
    slide.lease_owner = None
    slide.lease_expires_at = None
    session.flush()
    session.expire(analysis, ["cells"])
    return analysis


def _keep_reviews(session: Session, analysis_id: int, cells: Sequence[CellRecord]) -> list[CellRecord]:
    """Drop an analysis' unreviewed cells; update reviewed ones from the new cell at their place.

    Returns the new cells still to insert (those no reviewed cell stands for).
    """
    session.execute(delete(Cell).where(Cell.analysis_id == analysis_id, Cell.reviewer_label.is_(None)))
    reviewed = session.scalars(select(Cell).where(Cell.analysis_id == analysis_id)).all()
    remaining = list(cells)
    for old in reviewed:
        match = min(
            (c for c in remaining if abs(c.x - old.x) <= SAME_CELL_PX and abs(c.y - old.y) <= SAME_CELL_PX),
            key=lambda c: (c.x - old.x) ** 2 + (c.y - old.y) ** 2,
            default=None,
        )
        if match is None:
            continue
        remaining.remove(match)
        for name, value in asdict(match).items():
            setattr(old, name, value)
    return remaining


def current_analysis(session: Session, slide_id: int) -> Analysis | None:
    """The analysis whose models produced the slide's current summary."""
    slide = require_slide(session, slide_id)
    if slide.stage1_model_id is None or slide.stage2_model_id is None:
        return None
    return session.scalars(
        select(Analysis).where(
            Analysis.slide_id == slide_id,
            Analysis.stage1_model_id == slide.stage1_model_id,
            Analysis.stage2_model_id == slide.stage2_model_id,
        )
    ).first()


def cells_of_slide(session: Session, slide_id: int, *, limit: int | None = None) -> Sequence[Cell]:
    """The current analysis' cells, most suspicious first."""
    analysis = current_analysis(session, slide_id)
    if analysis is None:
        return []
    query = select(Cell).where(Cell.analysis_id == analysis.id).order_by(Cell.suspicion.desc(), Cell.id)
    if limit is not None:
        query = query.limit(limit)
    return session.scalars(query).all()
