"""What a slide's report says, read in one go.

The slide, the machine's verdict and the models behind it, the cells a person should look at, the reviews and
the signed steps. Rendering it (PDF, CSV, JSON) is :mod:`papscreen.reports`'s job; this is the one place that
decides what goes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from papscreen.db.queries.signout import SignoutRow, signouts_of
from papscreen.db.queries.slide_view import GalleryEntry, slide_view
from papscreen.db.schema import Cell, ModelVersion, SignoutStatus, Slide

__all__ = ["ModelLine", "SlideReport", "slide_report", "trained_on"]


@dataclass(frozen=True)
class ModelLine:
    """One model that analysed the slide, as the report names it."""

    stage: str
    name: str
    architecture: str
    trained_on: str


@dataclass(frozen=True)
class SlideReport:
    """Everything a slide's report shows; ``final`` once it is signed out."""

    slide_id: int
    name: str
    sha256: str
    received_at: datetime
    analysed_at: datetime | None
    status: str
    category: str | None
    category_reason: str | None
    abnormal_score: float | None
    adequacy: str | None
    adequacy_reason: str | None
    cell_count: int | None
    class_counts: dict[str, int]
    models: tuple[ModelLine, ...]
    gallery: tuple[GalleryEntry, ...]
    results_dir: str | None
    cells_reviewed: int
    cells_corrected: int
    interpretation: str | None
    signout_status: str | None
    signouts: tuple[SignoutRow, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """Whether the report is signed out (else it is preliminary)."""
        return self.signout_status == SignoutStatus.SIGNED_OUT


def trained_on(card: dict[str, Any]) -> str:
    """Where a model's training data came from, as a report's reader needs it.

    Examples:
        >>> trained_on({"training": {"data_provenance": "real"}})
        'real Pap smears (its card names the data)'
        >>> trained_on({"training": {"data_provenance": "synthetic"}})
        'synthetic demo data: not for diagnosis'
        >>> trained_on({"source": "keras DB_4 model"})
        'imported: keras DB_4 model'
        >>> trained_on({})
        'data not recorded on its card'
    """
    if card.get("source"):
        return f"imported: {card['source']}"
    provenance = (card.get("training") or {}).get("data_provenance")
    if provenance == "real":
        return "real Pap smears (its card names the data)"
    if provenance == "synthetic":
        return "synthetic demo data: not for diagnosis"
    return "data not recorded on its card"


def slide_report(session: Session, slide_id: int, *, gallery_limit: int = 12) -> SlideReport:
    """Read the report of one slide (raises ``LookupError`` when there is none)."""
    view = slide_view(session, slide_id, cell_limit=1)
    slide = session.get(Slide, slide_id)
    assert slide is not None  # slide_view raised otherwise
    models = []
    for stage, model_id in (("stage 1 (cells)", slide.stage1_model_id), ("stage 2 (grades)", slide.stage2_model_id)):
        model = session.get(ModelVersion, model_id) if model_id is not None else None
        if model is not None:
            models.append(ModelLine(stage, model.name, model.architecture, trained_on(model.card or {})))
    corrected = 0
    if view.analysis_id is not None:
        corrected = session.scalar(
            select(func.count(Cell.id)).where(
                Cell.analysis_id == view.analysis_id,
                Cell.reviewer_label.is_not(None),
                Cell.reviewer_label != Cell.predicted_class,
            )
        )
    return SlideReport(
        slide_id=slide_id,
        name=view.name,
        sha256=slide.sha256,
        received_at=view.received_at,
        analysed_at=view.finished_at,
        status=view.status,
        category=view.category,
        category_reason=view.details.get("category_reason"),
        abnormal_score=view.abnormal_score,
        adequacy=view.adequacy,
        adequacy_reason=view.details.get("adequacy_reason"),
        cell_count=view.cell_count,
        class_counts=dict(view.class_counts),
        models=tuple(models),
        gallery=view.gallery[:gallery_limit],
        results_dir=view.results_dir,
        cells_reviewed=view.cells_reviewed,
        cells_corrected=int(corrected or 0),
        interpretation=view.interpretation,
        signout_status=view.signout_status,
        signouts=tuple(signouts_of(session, slide_id)),
    )
