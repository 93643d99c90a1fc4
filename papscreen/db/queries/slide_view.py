"""What the dashboard's slide page shows of one slide, read in one go as plain (cacheable) data.

The page caches these answers with ``st.cache_data``, which pickles them, so nothing here returns an ORM object:
:class:`SlideView` carries the slide row's facts, its current analysis (summary, details, the models that made
it, where its overlay and gallery crops are) and the most suspicious cells of that analysis with any reviewer
label. :func:`cells_in_region` gives the cells inside a level-0 window (the region view draws them), and
:func:`slides_for_picker` the slides to choose from when none is selected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from papscreen.db.queries._rows import slide_fields
from papscreen.db.queries.analyses import current_analysis
from papscreen.db.queries.slides import require_slide
from papscreen.db.queries.worklist import champion_ids
from papscreen.db.schema import Cell, ModelVersion, Slide, SlideStatus

__all__ = [
    "DEFAULT_CELL_LIMIT",
    "CellRow",
    "GalleryEntry",
    "PickerSlide",
    "SlideView",
    "cells_in_region",
    "slide_view",
    "slides_for_picker",
]

DEFAULT_CELL_LIMIT = 500
"""Cells the page lists by default: a reviewer works from the most suspicious down, never through all of them."""

_COORDINATE_TOLERANCE = 1e-3
"""Gallery entries are matched to cell rows by position (level-0 px); both come from the same float."""


@dataclass(frozen=True)
class CellRow:
    """One graded cell of the current analysis, with the reviewer's label when a person gave one.

    Attributes:
        id: the cell's row id (what :func:`~papscreen.db.queries.review_cell` takes).
        x: level-0 column of the cell's centre.
        y: level-0 row of the cell's centre.
        box: level-0 (x0, y0, x1, y1) of the crop stage 2 graded.
        predicted_class: the model's class.
        suspicion: probability that the cell is abnormal (1 - P(NILM)).
        stage1_score: the detector's confidence.
        probabilities: stage 2's probability per class.
        reviewer_label: the class a person gave, or None.
        reviewer: who gave it.
        reviewed_at: when (UTC).
    """

    id: int
    x: float
    y: float
    box: tuple[int, int, int, int]
    predicted_class: str
    suspicion: float
    stage1_score: float
    probabilities: dict[str, float]
    reviewer_label: str | None = None
    reviewer: str | None = None
    reviewed_at: datetime | None = None

    @property
    def label(self) -> str:
        """The class to believe: the reviewer's when there is one, else the model's.

        Examples:
            >>> CellRow(1, 0.0, 0.0, (0, 0, 8, 8), "NILM", 0.1, 0.9, {}, reviewer_label="LSIL").label
            'LSIL'
        """
        return self.reviewer_label or self.predicted_class

    @property
    def box_px(self) -> int:
        """Side of the graded crop in level-0 pixels (the box the overlays draw)."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1], 1)


@dataclass(frozen=True)
class GalleryEntry:
    """One crop of the gallery that the analysis wrote, tied back to its cell row.

    Attributes:
        cls: the cell's most probable class (``HSIL``, ``SCC``, ``LSIL``, ``NILM``).
        rank: its place in the gallery, 1 for the most suspicious cell of the slide.
        cell_index: the cell's index in the analysis' result (the order its rows were stored in).
        x: level-0 column of the cell's centre.
        y: level-0 row of the cell's centre.
        probability: the probability of ``cls``.
        file: the crop's PNG, relative to the analysis' results folder.
        suspicion: the probability that the cell is abnormal (1 - p(NILM)), what the gallery is ordered by.
        cell_id: the matching cell row, so the crop can be reviewed; None when no row matches.
    """

    cls: str
    rank: int
    cell_index: int
    x: float
    y: float
    probability: float
    file: str
    suspicion: float | None = None
    cell_id: int | None = None


@dataclass(frozen=True)
class SlideView:
    """One slide as its page shows it: the row's facts, its current analysis, and its most suspicious cells.

    ``cells`` holds the most suspicious cells (up to the limit asked for); ``gallery_cells`` the cells of the
    gallery entries, which for NILM are rarely among them.

    ``analysis_id`` is None (and the analysis fields empty) while the slide has no result yet: queued,
    processing, failed, quarantined or a duplicate.
    """

    id: int
    name: str
    status: str
    category: str | None
    adequacy: str | None
    abnormal_score: float | None
    cell_count: int | None
    class_counts: dict[str, int]
    received_at: datetime
    finished_at: datetime | None
    reviewed_at: datetime | None
    reviewed_by: str | None
    flow_run_id: str | None
    error: str | None
    stored_path: str | None
    format: str | None
    width: int | None
    height: int | None
    duplicate_of_id: int | None
    progress_fraction: float | None = None
    progress_note: str | None = None
    interpretation: str | None = None
    signout_status: str | None = None
    signed_out_by: str | None = None
    signed_out_at: datetime | None = None
    analysis_id: int | None = None
    stage1_model: str | None = None
    stage2_model: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    gallery: tuple[GalleryEntry, ...] = ()
    cells: tuple[CellRow, ...] = ()
    gallery_cells: tuple[CellRow, ...] = ()
    cells_total: int = 0
    cells_reviewed: int = 0
    older_models: bool = False

    @property
    def has_analysis(self) -> bool:
        """Whether the slide has a current result to show."""
        return self.analysis_id is not None

    @property
    def results_dir(self) -> str | None:
        """The folder of the analysis' overlay and gallery crops (``details["results_dir"]``)."""
        value = self.details.get("results_dir")
        return str(value) if value else None

    @property
    def overlay_file(self) -> str | None:
        """The overlay's file name inside :attr:`results_dir`."""
        value = self.details.get("overlay")
        return str(value) if value else None

    @property
    def scan_kind(self) -> str:
        """``slide`` (a whole-slide scan, worth a region view) or ``field`` (one field of view).

        Analyses record it; for an older one the stored format decides (a pyramid means a slide).
        """
        kind = self.details.get("scan_kind")
        if kind in ("slide", "field"):
            return str(kind)
        return "field" if (self.format or "").lower() in {"png", "jpeg", "jpg", "bmp"} else "slide"

    def gallery_entry(self, cell_id: int) -> GalleryEntry | None:
        """The gallery crop of a cell, None when the gallery does not show it."""
        return next((g for g in self.gallery if g.cell_id == cell_id), None)

    def cell(self, cell_id: int) -> CellRow | None:
        """A cell of the page by id: one of :attr:`cells` or of the gallery (None when neither lists it)."""
        return next((c for c in (*self.cells, *self.gallery_cells) if c.id == cell_id), None)

    @property
    def reviewable_cells(self) -> list[CellRow]:
        """Every cell the page can review: the listed ones, most suspicious first, then gallery cells not listed."""
        listed = {c.id for c in self.cells}
        return [*self.cells, *(c for c in self.gallery_cells if c.id not in listed)]


@dataclass(frozen=True)
class PickerSlide:
    """A slide to choose on the slide page when none is open."""

    id: int
    name: str
    status: str
    category: str | None
    abnormal_score: float | None
    received_at: datetime
    reviewed: bool

    @property
    def label(self) -> str:
        """One line for a select box: id, name, status or category and score, reviewed or not.

        Examples:
            >>> from datetime import UTC, datetime
            >>> PickerSlide(3, "a.svs", "done", "HSIL", 0.91234, datetime(2024, 1, 1, tzinfo=UTC), False).label
            '#3 a.svs: HSIL, score 0.912, to review'
        """
        if self.status == SlideStatus.DONE.value:
            score = "" if self.abnormal_score is None else f", score {self.abnormal_score:.3f}"
            state = "reviewed" if self.reviewed else "to review"
            return f"#{self.id} {self.name}: {self.category or 'no category'}{score}, {state}"
        return f"#{self.id} {self.name}: {self.status}"


def _cell_row(cell: Cell) -> CellRow:
    return CellRow(
        id=cell.id,
        x=float(cell.x),
        y=float(cell.y),
        box=(int(cell.box_x0), int(cell.box_y0), int(cell.box_x1), int(cell.box_y1)),
        predicted_class=cell.predicted_class,
        suspicion=float(cell.suspicion),
        stage1_score=float(cell.stage1_score),
        probabilities={str(k): float(v) for k, v in (cell.probabilities or {}).items()},
        reviewer_label=cell.reviewer_label,
        reviewer=cell.reviewer,
        reviewed_at=cell.reviewed_at,
    )


def _model_name(session: Session, model_id: int | None) -> str | None:
    """``name (architecture)``, and ``; trained on synthetic demo data`` when its card says so."""
    if model_id is None:
        return None
    model = session.get(ModelVersion, model_id)
    if model is None:
        return None
    synthetic = ((model.card or {}).get("training") or {}).get("data_provenance") == "synthetic"
    return f"{model.name} ({model.architecture}" + (
        "; trained on synthetic demo data, not for diagnosis)" if synthetic else ")"
    )


def _gallery(
    session: Session, analysis_id: int, entries: Sequence[Mapping[str, Any]]
) -> tuple[tuple[GalleryEntry, ...], tuple[CellRow, ...]]:
    """The analysis' gallery as entries matched to their cell rows by position (one query), and those rows.

    Most suspicious first, one entry per cell, ranked 1..N. An analysis written before the gallery was one list
    kept a list per class: its entries are merged into one, ordered by their cells' suspicion.
    """
    parsed: list[GalleryEntry] = []
    for entry in entries:
        try:
            parsed.append(
                GalleryEntry(
                    cls=str(entry["class"]),
                    rank=int(entry["rank"]),
                    cell_index=int(entry.get("cell_index", -1)),
                    x=float(entry["x"]),
                    y=float(entry["y"]),
                    probability=float(entry["probability"]),
                    file=str(entry["file"]),
                    suspicion=float(entry["suspicion"]) if entry.get("suspicion") is not None else None,
                )
            )
        except (KeyError, TypeError, ValueError):
            continue  # an entry written by another version; the rest of the gallery still shows
    if not parsed:
        return (), ()
    xs = sorted({g.x for g in parsed})
    candidates = session.scalars(
        select(Cell).where(Cell.analysis_id == analysis_id, Cell.x.in_(xs)).order_by(Cell.id)
    ).all()
    matched: list[GalleryEntry] = []
    rows: dict[int, CellRow] = {}
    for g in parsed:
        cell = next(
            (
                c
                for c in candidates
                if math.isclose(c.x, g.x, abs_tol=_COORDINATE_TOLERANCE)
                and math.isclose(c.y, g.y, abs_tol=_COORDINATE_TOLERANCE)
            ),
            None,
        )
        if cell is not None and cell.id in rows:
            continue  # listed under another class by an older analysis
        suspicion = g.suspicion if g.suspicion is not None else (None if cell is None else float(cell.suspicion))
        matched.append(replace(g, cell_id=None if cell is None else cell.id, suspicion=suspicion))
        if cell is not None:
            rows[cell.id] = _cell_row(cell)
    ordered = sorted(matched, key=lambda g: (-(g.suspicion if g.suspicion is not None else g.probability), g.rank))
    return tuple(replace(g, rank=rank) for rank, g in enumerate(ordered, start=1)), tuple(rows.values())


def slide_view(session: Session, slide_id: int, *, cell_limit: int = DEFAULT_CELL_LIMIT) -> SlideView:
    """Read one slide for its page: facts, current analysis, gallery and the ``cell_limit`` most suspicious cells.

    Raises:
        LookupError: no slide has this id.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> from papscreen.db import queries
        >>> db = memory_database()
        >>> with db.session() as s:
        ...     slide_id = queries.claim_scan(s, sha256="a" * 64, original_name="a.svs", size_bytes=1).slide.id
        ...     view = slide_view(s, slide_id)
        >>> view.name, view.status, view.has_analysis, view.cells
        ('a.svs', 'queued', False, ())
    """
    slide = require_slide(session, slide_id)
    view = SlideView(
        id=slide.id,
        **slide_fields(slide),
        class_counts={str(k): int(v) for k, v in (slide.class_counts or {}).items()},
        stored_path=slide.stored_path,
        format=slide.format,
        width=slide.width,
        height=slide.height,
        duplicate_of_id=slide.duplicate_of_id,
    )
    analysis = current_analysis(session, slide_id)
    if analysis is None:
        return view
    summary = dict(analysis.summary or {})
    details = dict(summary.pop("details", None) or {})
    cells = session.scalars(
        select(Cell).where(Cell.analysis_id == analysis.id).order_by(Cell.suspicion.desc(), Cell.id).limit(cell_limit)
    ).all()
    total, reviewed = session.execute(
        select(func.count(Cell.id), func.count(Cell.reviewer_label)).where(Cell.analysis_id == analysis.id)
    ).one()
    gallery, gallery_cells = _gallery(session, analysis.id, details.get("gallery") or [])
    champions = champion_ids(session)
    analysed_by = (analysis.stage1_model_id, analysis.stage2_model_id)
    return replace(
        view,
        older_models=None not in champions and analysed_by != champions,
        analysis_id=analysis.id,
        stage1_model=_model_name(session, analysis.stage1_model_id),
        stage2_model=_model_name(session, analysis.stage2_model_id),
        summary=summary,
        details=details,
        gallery=gallery,
        gallery_cells=gallery_cells,
        cells=tuple(_cell_row(c) for c in cells),
        cells_total=int(total),
        cells_reviewed=int(reviewed),
        flow_run_id=slide.flow_run_id or analysis.flow_run_id,
    )


def cells_in_region(
    session: Session, analysis_id: int, box: tuple[float, float, float, float], *, limit: int = 2000
) -> list[CellRow]:
    """The cells of an analysis whose centre lies in a level-0 window (x0, y0, x1, y1), most suspicious first.

    The region view draws these: every cell in the window, not only the page's most suspicious ones.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     cells_in_region(s, 1, (0, 0, 100, 100))
        []
    """
    x0, y0, x1, y1 = box
    query = (
        select(Cell)
        .where(Cell.analysis_id == analysis_id, Cell.x >= x0, Cell.x < x1, Cell.y >= y0, Cell.y < y1)
        .order_by(Cell.suspicion.desc(), Cell.id)
        .limit(limit)
    )
    return [_cell_row(c) for c in session.scalars(query).all()]


def slides_for_picker(session: Session, limit: int = 200) -> list[PickerSlide]:
    """Slides to open, the work first: analysed and not yet reviewed, most abnormal first; then the rest.

    Duplicates are left out (their first arrival is the slide to open).

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     slides_for_picker(s)
        []
    """
    done_first = case((Slide.status == SlideStatus.DONE, 0), else_=1)
    unreviewed_first = case((Slide.reviewed_at.is_(None), 0), else_=1)
    scored_first = case((Slide.abnormal_score.is_(None), 1), else_=0)
    query = (
        select(Slide)
        .where(Slide.status != SlideStatus.DUPLICATE)
        .order_by(
            done_first,
            unreviewed_first,
            scored_first,
            Slide.abnormal_score.desc(),
            Slide.received_at.desc(),
            Slide.id.desc(),
        )
        .limit(limit)
    )
    return [
        PickerSlide(
            id=s.id,
            name=s.original_name,
            status=s.status.value,
            category=s.category,
            abnormal_score=s.abnormal_score,
            received_at=s.received_at,
            reviewed=s.reviewed_at is not None,
        )
        for s in session.scalars(query).all()
    ]
