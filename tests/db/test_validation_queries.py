"""Validation runs, recent predictions and the running-run check, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.analyses import CellRecord, SummaryRecord
from papscreen.db.queries.training import running_training_run
from papscreen.db.queries.validation import list_validation_runs, recent_predictions, record_validation_run
from papscreen.db.schema import ModelStage, TrainingStatus, utcnow


def _models(database: Database) -> tuple[int, int, int]:
    common = {"architecture": "test", "file_path": "/m", "auto_champion": False}
    with database.session() as s:
        a = queries.register_model_version(s, stage=ModelStage.STAGE1, name="a", sha256="a" * 64, **common)
        b = queries.register_model_version(s, stage=ModelStage.STAGE2, name="b", sha256="b" * 64, **common)
        c = queries.register_model_version(s, stage=ModelStage.STAGE2, name="c", sha256="c" * 64, **common)
        return a.id, b.id, c.id


def _analyse(database: Database, slide_id: int, s1: int, s2: int, labels: list[str], suspicion: float) -> None:
    cells = [
        CellRecord(1.0, 1.0, 0, 0, 2, 2, 0.9, label, dict.fromkeys(BETHESDA_CLASSES, 0.25), suspicion)
        for label in labels
    ]
    with database.session() as s:
        queries.store_analysis(
            s,
            slide_id=slide_id,
            stage1_model_id=s1,
            stage2_model_id=s2,
            cells=cells,
            summary=SummaryRecord("NILM", "satisfactory", suspicion, len(cells), {}),
        )


def _slide(database: Database, n: int) -> int:
    with database.session() as s:
        return queries.claim_scan(s, sha256=f"{n:064x}", original_name=f"{n}.png", size_bytes=1).slide.id


def test_recent_predictions_count_only_current_analyses_of_the_newest_slides(database: Database) -> None:
    s1, s2_old, s2_new = _models(database)
    oldest, middle, newest = (_slide(database, n) for n in range(3))
    _analyse(database, oldest, s1, s2_old, ["NILM"] * 5, 0.1)
    _analyse(database, middle, s1, s2_old, ["NILM", "HSIL"], 0.5)
    _analyse(database, newest, s1, s2_old, ["NILM"] * 7, 0.2)
    _analyse(database, newest, s1, s2_new, ["SCC", "SCC", "HSIL"], 0.9)  # re-scored: this is now current
    _slide(database, 99)  # queued, never analysed

    with database.session() as s:
        counts, suspicion, slides = recent_predictions(s, 2)
        all_counts, _, all_slides = recent_predictions(s, 50)

    assert (counts, slides) == ({"HSIL": 2, "NILM": 1, "SCC": 2}, 2)
    assert sorted(suspicion.tolist()) == [0.5, 0.5, 0.9, 0.9, 0.9]
    assert isinstance(suspicion, np.ndarray)
    assert (all_counts["NILM"], all_slides) == (6, 3)


def test_validation_runs_are_recorded_and_listed_newest_first(database: Database) -> None:
    s1, s2, _ = _models(database)
    with database.session() as s:
        first = record_validation_run(
            s,
            stage1_model_id=s1,
            stage2_model_id=s2,
            metrics={"DB_4": {"macro_f1": 0.8}},
            drift={},
            drift_flagged=False,
        )
        second = record_validation_run(
            s,
            stage1_model_id=s1,
            stage2_model_id=s2,
            metrics={"DB_4": {"macro_f1": 0.7}},
            drift={"reason": "drift in abnormal score"},
            drift_flagged=True,
            notes="reference: not scored",
            flow_run_id="abc",
        )
        first_id, second_id = first.id, second.id
    with database.session() as s:
        runs = list_validation_runs(s)
        assert [r.id for r in runs] == [second_id, first_id]
        assert runs[0].drift_flagged is True
        assert runs[0].metrics["DB_4"]["macro_f1"] == 0.7
        assert (runs[0].notes, runs[0].flow_run_id) == ("reference: not scored", "abc")
        assert [r.id for r in list_validation_runs(s, limit=1)] == [second_id]


def test_running_training_run_ignores_stale_finished_and_other_stage_runs(database: Database) -> None:
    with database.session() as s:
        stale = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={})
        stale.started_at = utcnow() - timedelta(hours=13)
        done = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={})
        queries.finish_training_run(s, done.id, status=TrainingStatus.SUCCEEDED)
        queries.start_training_run(s, stage=ModelStage.STAGE1, parameters={})
    window = utcnow() - timedelta(hours=12)
    with database.session() as s:
        assert running_training_run(s, ModelStage.STAGE2, newer_than=window) is None
        live = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={})
        assert running_training_run(s, ModelStage.STAGE2, newer_than=window) is live
