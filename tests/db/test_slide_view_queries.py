"""The slide page's reads: one slide as plain data, the cells of a window, and the slides to pick from."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.slide_view import (
    CellRow,
    SlideView,
    cells_in_region,
    slide_view,
    slides_for_picker,
)
from papscreen.db.schema import ModelStage
from papscreen.imaging.image_io import write_rgb

SCAN_SIDE = 2048
CROP = 32


@dataclass(frozen=True)
class PlannedCell:
    """A cell to seed: where, what the model said, how suspicious, and whether the gallery shows it."""

    x: float
    y: float
    cls: str
    suspicion: float
    in_gallery: bool = True


# Ordered as the analysis stores them (cell_index = position here); not by suspicion, on purpose.
PLANNED: tuple[PlannedCell, ...] = (
    PlannedCell(1500.5, 1500.25, "NILM", 0.20),
    PlannedCell(1000.0, 1000.0, "HSIL", 0.95),
    PlannedCell(300.0, 320.0, "LSIL", 0.60),
    PlannedCell(1100.0, 1050.0, "SCC", 0.90),
    PlannedCell(1600.0, 200.0, "NILM", 0.05),
    PlannedCell(1020.0, 980.0, "NILM", 0.10, in_gallery=False),  # inside the HSIL cell's crop: shown there
)
BY_SUSPICION = sorted(range(len(PLANNED)), key=lambda i: -PLANNED[i].suspicion)
IN_GALLERY = [i for i in BY_SUSPICION if PLANNED[i].in_gallery]


def _probabilities(cell: PlannedCell) -> dict[str, float]:
    rest = (1.0 - (1.0 - cell.suspicion if cell.cls == "NILM" else cell.suspicion)) / 3
    probs = dict.fromkeys(("NILM", "LSIL", "HSIL", "SCC"), rest)
    probs[cell.cls] = 1.0 - cell.suspicion if cell.cls == "NILM" else cell.suspicion
    return probs


def _records(cells: Sequence[PlannedCell]) -> list[queries.CellRecord]:
    half = CROP // 2
    return [
        queries.CellRecord(
            x=c.x,
            y=c.y,
            box_x0=round(c.x) - half,
            box_y0=round(c.y) - half,
            box_x1=round(c.x) - half + CROP,
            box_y1=round(c.y) - half + CROP,
            stage1_score=0.9,
            predicted_class=c.cls,
            probabilities=_probabilities(c),
            suspicion=c.suspicion,
        )
        for c in cells
    ]


def write_results(
    folder: Path, cells: Sequence[PlannedCell] = PLANNED, *, per_class: bool = False
) -> list[dict[str, object]]:
    """Write a tiny overlay and one crop per gallery cell, as the analysis does; returns the gallery list.

    ``per_class`` writes the gallery as analyses did before it became one list: a list per class, ranked within
    its class, without the suspicion.
    """
    rng = np.random.default_rng(0)
    write_rgb(folder / "overlay.png", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    gallery: list[dict[str, object]] = []
    shown = sorted((i for i, c in enumerate(cells) if c.in_gallery), key=lambda i: -cells[i].suspicion)
    for rank, index in enumerate(shown, start=1):
        cell = cells[index]
        entry: dict[str, object] = {
            "class": cell.cls, "x": cell.x, "y": cell.y, "cell_index": index,
            "probability": _probabilities(cell)[cell.cls],
        }  # fmt: skip
        if per_class:
            rank_in_class = 1 + sum(g["class"] == cell.cls for g in gallery)
            entry |= {"rank": rank_in_class, "file": f"gallery/{cell.cls}/{rank_in_class:03d}.png"}
        else:
            entry |= {"rank": rank, "file": f"gallery/{rank:03d}.png", "suspicion": cell.suspicion}
        write_rgb(folder / str(entry["file"]), rng.integers(0, 255, (CROP, CROP, 3), dtype=np.uint8))
        gallery.append(entry)
    return gallery


def seed_models(database: Database) -> tuple[int, int]:
    with database.session() as s:
        one = queries.register_model_version(
            s, stage=ModelStage.STAGE1, name="s1-test", architecture="cnn20plus", file_path="/m/1", sha256="1" * 64
        )
        two = queries.register_model_version(
            s, stage=ModelStage.STAGE2, name="s2-test", architecture="resnet50", file_path="/m/2", sha256="2" * 64
        )
        return one.id, two.id


def seed_slide(
    database: Database,
    name: str = "case-017.svs",
    *,
    models: tuple[int, int] | None = None,
    results_dir: Path | None = None,
    per_class_gallery: bool = False,
    scan: Path | None = None,
    scan_kind: str = "slide",
    cells: Sequence[PlannedCell] = PLANNED,
    abnormal_score: float = 0.87,
    category: str = "HSIL",
    analysed: bool = True,
) -> int:
    """A slide through the query layer: claimed, stored, processed (flow run ``run-<id>``) and, if asked, analysed."""
    assert models is not None or not analysed, "an analysed slide needs its models (seed_models)"
    gallery = write_results(results_dir, cells, per_class=per_class_gallery) if results_dir is not None else []
    with database.session() as s:
        slide_id = queries.claim_scan(
            s, sha256=name.encode().hex().ljust(64, "0")[:64], original_name=name, size_bytes=10
        ).slide.id
        queries.mark_stored(
            s,
            slide_id,
            stored_path=str(scan) if scan is not None else f"/store/{name}",
            format="tiff" if scan_kind == "slide" else "png",
            width=SCAN_SIDE,
            height=SCAN_SIDE,
        )
        if not analysed:
            return slide_id
        queries.start_processing(s, slide_id, flow_run_id=f"run-{slide_id}")
        counts = {k: sum(c.cls == k for c in cells) for k in ("NILM", "LSIL", "HSIL", "SCC")}
        details = {
            "adequacy_reason": "enough squamous cells",
            "category_reason": f"{category}: 12 cells graded {category} or worse with probability >= 0.9 (rule: >= 10)",
            "scan_kind": scan_kind,
            "gallery": gallery,
        }
        if results_dir is not None:
            details |= {"results_dir": str(results_dir), "overlay": "overlay.png", "overlay_scale": 48 / SCAN_SIDE}
        queries.store_analysis(
            s,
            slide_id=slide_id,
            stage1_model_id=models[0],
            stage2_model_id=models[1],
            cells=_records(cells),
            summary=queries.SummaryRecord(
                category=category,
                adequacy="satisfactory",
                abnormal_score=abnormal_score,
                cell_count=len(cells),
                class_counts=counts,
                details=details,
            ),
            duration_s=1.5,
            flow_run_id=f"run-{slide_id}",
        )
    return slide_id


@pytest.fixture
def analysed(database: Database, tmp_path: Path) -> int:
    return seed_slide(database, models=seed_models(database), results_dir=tmp_path / "results")


def _view(database: Database, slide_id: int, **kwargs: int) -> SlideView:
    with database.session() as s:
        return slide_view(s, slide_id, **kwargs)


def test_view_of_an_analysed_slide(database: Database, analysed: int, tmp_path: Path) -> None:
    view = _view(database, analysed)

    assert (view.name, view.status, view.category, view.adequacy) == ("case-017.svs", "done", "HSIL", "satisfactory")
    assert view.abnormal_score == pytest.approx(0.87)
    assert view.has_analysis
    assert view.flow_run_id == f"run-{analysed}"
    assert (view.stage1_model, view.stage2_model) == ("s1-test (cnn20plus)", "s2-test (resnet50)")
    assert view.results_dir == str(tmp_path / "results")
    assert view.overlay_file == "overlay.png"
    assert view.scan_kind == "slide"
    assert view.summary["category"] == "HSIL"
    assert "details" not in view.summary
    assert view.class_counts == {"NILM": 3, "LSIL": 1, "HSIL": 1, "SCC": 1}
    assert (view.cells_total, view.cells_reviewed) == (6, 0)
    assert view.reviewed_at is None


def test_cells_most_suspicious_first_with_a_limit(database: Database, analysed: int) -> None:
    full = _view(database, analysed)
    top = _view(database, analysed, cell_limit=2)

    assert [(c.x, c.y) for c in full.cells] == [(PLANNED[i].x, PLANNED[i].y) for i in BY_SUSPICION]
    assert [c.suspicion for c in top.cells] == [0.95, 0.90]
    assert top.cells_total == 6
    hsil = full.cells[0]
    assert hsil.predicted_class == "HSIL"
    assert hsil.box == (984, 984, 1016, 1016)
    assert hsil.box_px == CROP
    assert hsil.probabilities["HSIL"] == pytest.approx(0.95)
    assert hsil.label == "HSIL"


def test_gallery_entries_are_matched_to_their_cells(database: Database, analysed: int) -> None:
    view = _view(database, analysed, cell_limit=2)  # the NILM gallery cells are not among the two listed

    assert [(g.x, g.y) for g in view.gallery] == [(PLANNED[i].x, PLANNED[i].y) for i in IN_GALLERY]
    assert [g.rank for g in view.gallery] == [1, 2, 3, 4, 5]
    assert [g.suspicion for g in view.gallery] == [PLANNED[i].suspicion for i in IN_GALLERY]
    assert all(g.cell_id is not None for g in view.gallery)
    for g in view.gallery:
        cell = view.cell(g.cell_id)
        assert cell is not None
        assert (cell.x, cell.y) == (g.x, g.y)
        assert cell.predicted_class == g.cls
        assert view.gallery_entry(cell.id) == g
    assert view.gallery[0].file == "gallery/001.png"
    assert view.gallery[0].probability == pytest.approx(0.95)
    reviewable = [c.id for c in view.reviewable_cells]
    assert len(reviewable) == len(set(reviewable)) == 2 + 3  # 2 listed, then the 3 gallery cells not listed
    assert reviewable[:2] == [c.id for c in view.cells]


def test_a_gallery_kept_per_class_by_an_older_analysis_reads_as_one_list(database: Database, tmp_path: Path) -> None:
    slide_id = seed_slide(
        database, models=seed_models(database), results_dir=tmp_path / "results", per_class_gallery=True
    )
    view = _view(database, slide_id)

    assert [(g.x, g.y) for g in view.gallery] == [(PLANNED[i].x, PLANNED[i].y) for i in IN_GALLERY]
    assert [g.rank for g in view.gallery] == [1, 2, 3, 4, 5]  # ranked anew across classes, by the cells' suspicion
    assert [g.suspicion for g in view.gallery] == pytest.approx([PLANNED[i].suspicion for i in IN_GALLERY])
    assert [g.file for g in view.gallery][:2] == ["gallery/HSIL/001.png", "gallery/SCC/001.png"]


def test_reviews_show_in_the_view(database: Database, analysed: int) -> None:
    cell_id = _view(database, analysed).cells[0].id
    with database.session() as s:
        queries.review_cell(s, cell_id, label="LSIL", reviewer="ann")
        queries.mark_slide_reviewed(s, analysed, reviewer="ann")

    view = _view(database, analysed)
    cell = view.cell(cell_id)

    assert cell is not None
    assert (cell.reviewer_label, cell.reviewer, cell.label, cell.predicted_class) == ("LSIL", "ann", "LSIL", "HSIL")
    assert cell.reviewed_at is not None
    assert cell.reviewed_at.tzinfo is not None
    assert (view.cells_reviewed, view.reviewed_by) == (1, "ann")
    assert view.reviewed_at is not None


def test_view_is_plain_data_that_pickles(database: Database, analysed: int) -> None:
    view = _view(database, analysed)

    again = pickle.loads(pickle.dumps(view))

    assert again == view
    assert isinstance(again.cells[0], CellRow)


def test_slide_without_result(database: Database) -> None:
    slide_id = seed_slide(database, "waiting.tif", analysed=False)

    view = _view(database, slide_id)

    assert not view.has_analysis
    assert (view.status, view.cells, view.gallery, view.details) == ("queued", (), (), {})
    assert view.stored_path == "/store/waiting.tif"
    assert view.results_dir is None


def test_unknown_slide_raises_lookup_error(database: Database) -> None:
    with pytest.raises(LookupError, match="no slide with id 4242"):
        _view(database, 4242)


BARE_VIEW = SlideView(
    **dict.fromkeys(
        ("category", "adequacy", "abnormal_score", "cell_count", "finished_at", "reviewed_at", "reviewed_by"), None
    ),
    **dict.fromkeys(("flow_run_id", "error", "stored_path", "format", "width", "height", "duplicate_of_id"), None),
    id=1,
    name="a",
    status="done",
    class_counts={},
    received_at=datetime.now(UTC),
)


@pytest.mark.parametrize(
    ("details", "fmt", "expected"),
    [({"scan_kind": "field"}, "tiff", "field"), ({}, "png", "field"), ({}, "svs", "slide"), ({}, None, "slide")],
    ids=["recorded", "png-without-record", "svs-without-record", "unknown"],
)
def test_scan_kind(details: dict[str, str], fmt: str | None, expected: str) -> None:
    assert replace(BARE_VIEW, format=fmt, details=details).scan_kind == expected


def test_cells_in_region(database: Database, analysed: int) -> None:
    analysis_id = _view(database, analysed).analysis_id
    assert analysis_id is not None
    with database.session() as s:
        found = cells_in_region(s, analysis_id, (900, 900, 1200, 1200))
        corner = cells_in_region(s, analysis_id, (0, 0, 100, 100))
        one = cells_in_region(s, analysis_id, (900, 900, 1200, 1200), limit=1)

    assert [(c.x, c.y) for c in found] == [(1000.0, 1000.0), (1100.0, 1050.0), (1020.0, 980.0)]
    assert corner == []
    assert [c.suspicion for c in one] == [0.95]


def test_picker_lists_the_work_first(database: Database) -> None:
    models = seed_models(database)
    low = seed_slide(database, "low.svs", models=models, abnormal_score=0.1, category="NILM")
    high = seed_slide(database, "high.svs", models=models, abnormal_score=0.9)
    done_reviewed = seed_slide(database, "reviewed.svs", models=models, abnormal_score=0.99)
    waiting = seed_slide(database, "waiting.svs", analysed=False)
    with database.session() as s:
        queries.mark_slide_reviewed(s, done_reviewed, reviewer="ann")
        queries.claim_scan(s, sha256=b"high.svs".hex().ljust(64, "0")[:64], original_name="copy", size_bytes=1)

    with database.session() as s:
        picked = slides_for_picker(s)
        first_two = slides_for_picker(s, limit=2)

    assert [p.id for p in picked] == [high, low, done_reviewed, waiting]  # the duplicate is left out
    assert [p.id for p in first_two] == [high, low]
    assert picked[0].label == f"#{high} high.svs: HSIL, score 0.900, to review"
    assert picked[2].reviewed
    assert picked[3].label == f"#{waiting} waiting.svs: queued"
