"""Reviewer corrections: stored with user and time, audited, and read back for retraining."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.db.queries.audit import record_event
from papscreen.db.queries.slides import require_slide
from papscreen.db.schema import Cell, SignoutStatus, Slide, utcnow

__all__ = ["ReviewedCell", "mark_slide_reviewed", "review_cell", "reviewed_cells"]


def review_cell(session: Session, cell_id: int, *, label: str, reviewer: str) -> Cell:
    """Confirm or correct a cell's class; the prediction stays beside the reviewer's label."""
    if label not in BETHESDA_CLASSES:
        raise ValueError(f"label must be one of {', '.join(BETHESDA_CLASSES)}, not {label!r}")
    if not reviewer.strip():
        raise ValueError("a review needs the reviewer's name")
    cell = session.get(Cell, cell_id)
    if cell is None:
        raise LookupError(f"no cell with id {cell_id}")
    previous = cell.reviewer_label
    cell.reviewer_label = label
    cell.reviewer = reviewer
    cell.reviewed_at = utcnow()
    record_event(
        session,
        "cell.reviewed",
        "cell",
        cell.id,
        actor=reviewer,
        details={
            "predicted": cell.predicted_class,
            "label": label,
            "previous_label": previous,
            "slide_id": cell.slide_id,
        },
    )
    return cell


def mark_slide_reviewed(session: Session, slide_id: int, *, reviewer: str) -> Slide:
    """Record that a person finished reviewing the slide."""
    slide = require_slide(session, slide_id)
    slide.reviewed_at = utcnow()
    slide.reviewed_by = reviewer
    record_event(session, "slide.reviewed", "slide", slide.id, actor=reviewer)
    return slide


@dataclass(frozen=True)
class ReviewedCell:
    """What retraining needs of a corrected cell: where it is, in which scan, and its true class."""

    cell_id: int
    slide_id: int
    stored_path: str | None
    x: float
    y: float
    label: str
    predicted_class: str
    reviewed_at: datetime


def reviewed_cells(
    session: Session, *, since: datetime | None = None, signed_out_only: bool = False
) -> Sequence[ReviewedCell]:
    """Every cell a person labelled, oldest first (optionally only since a time).

    ``signed_out_only``: only the cells of slides that have been signed out, so a quick exploratory correction
    does not reach training before the slide's review is confirmed.
    """
    query = (
        select(Cell, Slide.stored_path)
        .join(Slide, Slide.id == Cell.slide_id)
        .where(Cell.reviewer_label.is_not(None))
        .order_by(Cell.reviewed_at, Cell.id)
    )
    if since is not None:
        query = query.where(Cell.reviewed_at >= since)
    if signed_out_only:
        query = query.where(Slide.signout_status == SignoutStatus.SIGNED_OUT.value)
    return [
        ReviewedCell(
            cell_id=cell.id,
            slide_id=cell.slide_id,
            stored_path=path,
            x=cell.x,
            y=cell.y,
            label=cell.reviewer_label or "",
            predicted_class=cell.predicted_class,
            reviewed_at=cell.reviewed_at or utcnow(),
        )
        for cell, path in session.execute(query).all()
    ]
