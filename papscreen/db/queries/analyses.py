"""Analysis results: one transaction stores a slide's cells and summary, replacing a re-run's old cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from papscreen.db.queries.slides import move_status, require_slide
from papscreen.db.schema import Analysis, AnalysisStatus, Cell, SlideStatus, utcnow

__all__ = ["CellRecord", "SummaryRecord", "cells_of_slide", "current_analysis", "store_analysis"]


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
) -> Analysis:
    """Store a finished analysis and make it the slide's current result, in the caller's transaction.

    Idempotent per (slide, stage-1 model, stage-2 model): a re-run replaces that analysis' cells and never
    adds a second set. An analysis by other models is kept, so every result stays attributable.
    """
    slide = require_slide(session, slide_id)
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
        session.execute(delete(Cell).where(Cell.analysis_id == analysis.id))
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
