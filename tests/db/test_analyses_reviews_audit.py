"""Analysis results are idempotent per model pair; reviews are kept; the audit log is append-only."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Analysis, AuditEvent, Cell, ModelStage, Slide, SlideStatus


def _models(s: Session, tag: str) -> tuple[int, int]:
    ids = []
    for stage in (ModelStage.STAGE1, ModelStage.STAGE2):
        m = queries.register_model_version(
            s,
            stage=stage,
            name=f"{stage.value}-{tag}",
            architecture="x",
            file_path=f"/m/{tag}",
            sha256=(tag + stage.value).ljust(64, "0"),
        )
        ids.append(m.id)
    return ids[0], ids[1]


def _cells(n: int, cls: str = "NILM") -> list[queries.CellRecord]:
    return [
        queries.CellRecord(
            x=10.0 * i,
            y=5.0,
            box_x0=0,
            box_y0=0,
            box_x1=20,
            box_y1=20,
            stage1_score=0.9,
            predicted_class=cls,
            probabilities={"NILM": 0.1, "LSIL": 0.1, "HSIL": 0.7, "SCC": 0.1},
            suspicion=i / max(n, 1),
        )
        for i in range(n)
    ]


def _summary(n: int, category: str = "NILM") -> queries.SummaryRecord:
    return queries.SummaryRecord(
        category=category,
        adequacy="satisfactory",
        abnormal_score=0.25,
        cell_count=n,
        class_counts={"NILM": n, "LSIL": 0, "HSIL": 0, "SCC": 0},
    )


@pytest.fixture
def processing_slide(database: Database) -> int:
    with database.session() as s:
        slide_id = queries.claim_scan(s, sha256="c" * 64, original_name="s.png", size_bytes=1).slide.id
        queries.start_processing(s, slide_id)
    return slide_id


def test_rerun_with_same_models_replaces_cells(database: Database, processing_slide: int) -> None:
    with database.session() as s:
        m1, m2 = _models(s, "v1")
        queries.store_analysis(
            s, slide_id=processing_slide, stage1_model_id=m1, stage2_model_id=m2, cells=_cells(5), summary=_summary(5)
        )
    with database.session() as s:
        queries.store_analysis(
            s, slide_id=processing_slide, stage1_model_id=m1, stage2_model_id=m2, cells=_cells(3), summary=_summary(3)
        )
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Cell)) == 3
        assert s.scalar(select(func.count()).select_from(Analysis)) == 1
        slide = s.get(Slide, processing_slide)
        assert slide.status == SlideStatus.DONE
        assert slide.cell_count == 3


def test_rescore_with_new_models_keeps_old_result(database: Database, processing_slide: int) -> None:
    with database.session() as s:
        old = _models(s, "v1")
        queries.store_analysis(
            s,
            slide_id=processing_slide,
            stage1_model_id=old[0],
            stage2_model_id=old[1],
            cells=_cells(4),
            summary=_summary(4),
        )
        new = _models(s, "v2")
        queries.store_analysis(
            s,
            slide_id=processing_slide,
            stage1_model_id=new[0],
            stage2_model_id=new[1],
            cells=_cells(2, "HSIL"),
            summary=_summary(2, "HSIL"),
        )
    with database.session() as s:
        slide = s.get(Slide, processing_slide)
        assert (slide.stage1_model_id, slide.stage2_model_id) == new
        assert slide.category == "HSIL"
        assert s.scalar(select(func.count()).select_from(Analysis)) == 2
        current = queries.cells_of_slide(s, processing_slide)
        assert [c.predicted_class for c in current] == ["HSIL", "HSIL"]
        assert current[0].suspicion >= current[1].suspicion


def test_review_is_stored_audited_and_read_for_retraining(database: Database, processing_slide: int) -> None:
    with database.session() as s:
        m1, m2 = _models(s, "v1")
        queries.store_analysis(
            s, slide_id=processing_slide, stage1_model_id=m1, stage2_model_id=m2, cells=_cells(2), summary=_summary(2)
        )
        cell_id = queries.cells_of_slide(s, processing_slide)[0].id
        queries.review_cell(s, cell_id, label="HSIL", reviewer="ct.jones")
        queries.mark_slide_reviewed(s, processing_slide, reviewer="ct.jones")
    with database.session() as s:
        cell = s.get(Cell, cell_id)
        assert (cell.reviewer_label, cell.reviewer) == ("HSIL", "ct.jones")
        assert cell.reviewed_at is not None
        corrected = queries.reviewed_cells(s)
        assert [(c.cell_id, c.label, c.predicted_class) for c in corrected] == [(cell_id, "HSIL", "NILM")]
        actions = {e.action for e in queries.list_events(s)}
        assert {"cell.reviewed", "slide.reviewed"} <= actions
        with pytest.raises(ValueError, match="label must be one of"):
            queries.review_cell(s, cell_id, label="ASC-US", reviewer="ct.jones")


def test_deleting_a_slide_removes_its_cells(database: Database, processing_slide: int) -> None:
    with database.session() as s:
        m1, m2 = _models(s, "v1")
        queries.store_analysis(
            s, slide_id=processing_slide, stage1_model_id=m1, stage2_model_id=m2, cells=_cells(3), summary=_summary(3)
        )
    with database.session() as s:
        s.execute(delete(Slide).where(Slide.id == processing_slide))
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Cell)) == 0


@pytest.mark.parametrize("change", ["update", "delete"], ids=["update", "delete"])
def test_audit_log_is_append_only_in_the_database(database: Database, change: str) -> None:
    with database.session() as s:
        queries.record_event(s, "test.event", "thing", 1)
    statement = update(AuditEvent).values(actor="mallory") if change == "update" else delete(AuditEvent)
    with pytest.raises(DBAPIError, match="append-only"), database.session() as s:
        s.execute(statement)
    with database.session() as s:
        assert [e.actor for e in queries.list_events(s)] == ["papscreen"]


def test_a_rerun_keeps_reviewer_labels_on_the_same_cells(database: Database, processing_slide: int) -> None:
    with database.session() as s:
        m1, m2 = _models(s, "v1")
        queries.store_analysis(
            s, slide_id=processing_slide, stage1_model_id=m1, stage2_model_id=m2, cells=_cells(3), summary=_summary(3)
        )
        first, second, _ = sorted(queries.cells_of_slide(s, processing_slide), key=lambda c: c.x)
        queries.review_cell(s, first.id, label="HSIL", reviewer="ct.jones")
        queries.review_cell(s, second.id, label="LSIL", reviewer="ct.jones")
    rerun = [c for c in _cells(3, "SCC") if c.x != second.x]  # the same cells but one, graded otherwise
    with database.session() as s:
        queries.store_analysis(
            s, slide_id=processing_slide, stage1_model_id=m1, stage2_model_id=m2, cells=rerun, summary=_summary(2)
        )
    with database.session() as s:
        cells = sorted(queries.cells_of_slide(s, processing_slide), key=lambda c: c.x)
        reviewed = {c.id: (c.reviewer_label, c.predicted_class) for c in cells if c.reviewer_label}
        assert reviewed == {first.id: ("HSIL", "SCC"), second.id: ("LSIL", "NILM")}  # kept, the first regraded
        assert len(cells) == 3


def test_a_result_is_stored_only_under_the_workers_lease(database: Database) -> None:
    with database.session() as s:
        slide_id = queries.claim_scan(s, sha256="d" * 64, original_name="s.png", size_bytes=1).slide.id
        m1, m2 = _models(s, "v1")
    store = {"stage1_model_id": m1, "stage2_model_id": m2, "cells": _cells(1), "summary": _summary(1)}
    with database.session() as s, pytest.raises(queries.LeaseLostError, match="queued"):
        queries.store_analysis(s, slide_id=slide_id, owner="host:1", **store)
    with database.session() as s:
        queries.begin_analysis(s, slide_id, owner="host:1", lease_seconds=60)
    with database.session() as s, pytest.raises(queries.LeaseLostError, match="no longer analysed by host:2"):
        queries.store_analysis(s, slide_id=slide_id, owner="host:2", **store)
    with database.session() as s:
        queries.store_analysis(s, slide_id=slide_id, owner="host:1", **store)
        assert queries.get_slide(s, slide_id).status == SlideStatus.DONE
