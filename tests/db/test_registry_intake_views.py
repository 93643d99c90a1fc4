"""The models and intake pages' read queries, on SQLite and PostgreSQL; the seeds are shared with the page tests."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries import intake_view, registry_view
from papscreen.db.queries.validation import record_validation_run
from papscreen.db.schema import Decision, ModelStage, Slide, TrainingStatus
from papscreen.imaging.image_io import write_rgb
from papscreen.models.metrics import classification_report
from papscreen.models.plots import CONFUSION_PNG, ROC_PNG
from tests.db.seeding import add_model

CLASSES = ["NILM", "LSIL", "HSIL", "SCC"]
T0 = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)


def stage2_metrics(seed: int) -> dict:
    """Real ``ClassificationMetrics.to_dict()`` output of a noisy 4-class classifier."""
    rng = np.random.default_rng(seed)
    y_true = np.repeat(np.arange(4), 10)
    probs = rng.dirichlet(np.ones(4), size=40) + np.eye(4)[y_true] * (0.5 + 0.1 * seed)
    probs /= probs.sum(axis=1, keepdims=True)
    return classification_report(y_true, probs, CLASSES).to_dict() | {"split": "validation"}


@dataclass(frozen=True)
class SeededRegistry:
    """Ids of the seeded registry."""

    s1: int
    first: int
    second: int
    rejected: int
    promoted_run: int
    rejected_run: int
    folder: Path


def seed_registry(database: Database, models_dir: Path) -> SeededRegistry:
    """Stage 1: one champion. Stage 2: a first champion, retired by a promoted challenger, and a rejected one.

    Two training runs (promoted, rejected) with history; two validation runs (the second flags drift). The
    promoted challenger's folder holds two evaluation PNGs.
    """
    folder = models_dir / "s2-night-2"
    folder.mkdir(parents=True)
    for name in (CONFUSION_PNG, ROC_PNG):
        write_rgb(folder / name, np.full((20, 30, 3), 200, np.uint8))
    history = [
        {"epoch": 1, "train_loss": 1.2, "val_loss": 1.1, "val_f1": 0.5, "seconds": 3.0},
        {"epoch": 2, "train_loss": 0.8, "val_loss": 0.9, "val_f1": 0.6, "seconds": 3.0},
        {"epoch": 3, "train_loss": 0.6, "val_loss": 0.85, "val_f1": 0.7, "seconds": 3.0},
    ]
    with database.session() as s:
        s1_metrics = {"loss": 0.21, "f1": 0.88, "best_epoch": 4.0}
        s1 = add_model(s, ModelStage.STAGE1, "s1-base", "cnn20plus", models_dir / "s1-base", "1", s1_metrics)
        first = add_model(s, ModelStage.STAGE2, "s2-base", "resnet18", models_dir / "s2-base", "2", stage2_metrics(0))
        second = add_model(
            s, ModelStage.STAGE2, "s2-night-2", "resnet18", folder, "3", stage2_metrics(3), auto_champion=False
        )
        promoted_run = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={"epochs": 3})
        queries.promote(s, second.id, reason="better")
        queries.finish_training_run(
            s,
            promoted_run.id,
            status=TrainingStatus.SUCCEEDED,
            history=history,
            metrics={"challenger": second.metrics, "champion": first.metrics},
            model_version_id=second.id,
            baseline_model_version_id=first.id,
            decision=Decision.PROMOTED,
            reason="macro-F1 0.900 >= 0.700 and HSIL, SCC sensitivity held",
        )
        rejected_dir = models_dir / "s2-night-3"
        rejected = add_model(
            s, ModelStage.STAGE2, "s2-night-3", "resnet18", rejected_dir, "4", stage2_metrics(1), auto_champion=False
        )
        rejected_run = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={"epochs": 3})
        rejected_run.flow_run_id = "retrain-run-3"
        queries.reject(s, rejected.id, reason="HSIL sensitivity dropped")
        queries.finish_training_run(
            s,
            rejected_run.id,
            status=TrainingStatus.SUCCEEDED,
            history=history[:2],
            model_version_id=rejected.id,
            baseline_model_version_id=second.id,
            decision=Decision.REJECTED,
            reason="HSIL sensitivity dropped from 0.900 to 0.700 (more than 0.02)",
        )
        record_validation_run(
            s,
            stage1_model_id=s1.id,
            stage2_model_id=second.id,
            metrics={"DB_3": {"macro_f1": 0.81}, "DB_4": {"macro_f1": 0.74}},
            drift={"flagged": False, "reason": "no drift"},
            drift_flagged=False,
        ).at = T0
        record_validation_run(
            s,
            stage1_model_id=s1.id,
            stage2_model_id=second.id,
            metrics={"DB_3": {"macro_f1": 0.80}, "DB_4": {"macro_f1": 0.69}},
            drift={"flagged": True, "reason": "abnormal-score PSI 0.31 over 0.2"},
            drift_flagged=True,
            flow_run_id="validate-run-2",
        ).at = T0 + timedelta(days=1)
        return SeededRegistry(s1.id, first.id, second.id, rejected.id, promoted_run.id, rejected_run.id, folder)


@dataclass(frozen=True)
class SeededIntake:
    """Ids of the seeded intake."""

    quarantined: int
    first: int
    duplicate: int
    failed: int
    done: tuple[int, ...]


def _summary() -> queries.SummaryRecord:
    return queries.SummaryRecord(
        category="NILM", adequacy="adequate", abnormal_score=0.1, cell_count=0, class_counts={"NILM": 0}
    )


def seed_intake(database: Database) -> SeededIntake:
    """One quarantined, one duplicate (of a done slide), one failed, three done slides with fixed times.

    The done slides took 60, 120 and 300 s of analysis, and 100, 400 and 1000 s from arrival to result.
    """
    with database.session() as s:
        s1 = add_model(s, ModelStage.STAGE1, "s1", "cnn20", "/m/s1", "a")
        s2 = add_model(s, ModelStage.STAGE2, "s2", "resnet18", "/m/s2", "b")
        done = []
        for i, (analysis_s, total_s) in enumerate([(60, 100), (120, 400), (300, 1000)]):
            slide = queries.claim_scan(s, sha256=f"{i:064x}", original_name=f"done-{i}.svs", size_bytes=100).slide
            queries.begin_analysis(s, slide.id, owner="host:1", lease_seconds=60, flow_run_id=f"analyze-{i}")
            queries.store_analysis(
                s, slide_id=slide.id, stage1_model_id=s1.id, stage2_model_id=s2.id, cells=[], summary=_summary()
            )
            finished = T0 + timedelta(hours=i)
            slide.received_at = finished - timedelta(seconds=total_s)
            slide.started_at = finished - timedelta(seconds=analysis_s)
            slide.finished_at = finished
            done.append(slide.id)
        duplicate = queries.claim_scan(s, sha256=f"{0:064x}", original_name="copy of done-0.svs", size_bytes=100)
        bad = queries.claim_scan(s, sha256="c" * 64, original_name="cut.jpg", size_bytes=5).slide
        queries.quarantine_slide(
            s, bad.id, reason="file is empty (0 bytes)", quarantined_path="/q/2024/05/06/00000005-cut.jpg"
        )
        failing = queries.claim_scan(s, sha256="d" * 64, original_name="tiles.ndpi", size_bytes=7).slide
        queries.begin_analysis(s, failing.id, owner="host:1", lease_seconds=60, flow_run_id="analyze-failed")
        queries.fail_slide(s, failing.id, "cannot read the region at level-0 (x=0, y=0): rescan it")
        return SeededIntake(bad.id, done[0], duplicate.slide.id, failing.id, tuple(done))


def test_registry_view_lists_history_runs_and_validation(database: Database, tmp_path: Path) -> None:
    seeded = seed_registry(database, tmp_path / "models")
    with database.session() as s:
        view = registry_view.registry_view(s)

    assert [(v.name, v.status) for v in view.of_stage("stage2")] == [
        ("s2-night-3", "rejected"),
        ("s2-night-2", "champion"),
        ("s2-base", "retired"),
    ]
    champion = view.champion("stage2")
    assert champion is not None
    assert champion.id == seeded.second
    assert champion.promoted_at is not None
    assert champion.metrics["class_names"] == CLASSES
    assert len(champion.metrics["confusion"]) == 4
    retired = next(v for v in view.versions if v.id == seeded.first)
    assert retired.retired_at is not None
    assert retired.promoted_at is not None
    assert view.champion("stage1").name == "s1-base"  # type: ignore[union-attr]

    newest, oldest = view.training_runs
    assert (newest.id, newest.decision, newest.model_name, newest.baseline_name) == (
        seeded.rejected_run,
        "rejected",
        "s2-night-3",
        "s2-night-2",
    )
    assert newest.reason.startswith("HSIL sensitivity dropped")  # type: ignore[union-attr]
    assert newest.flow_run_id == "retrain-run-3"
    assert (oldest.decision, oldest.baseline_model_version_id) == ("promoted", seeded.first)
    assert [row["val_f1"] for row in oldest.history] == [0.5, 0.6, 0.7]
    assert oldest.duration_s is not None

    assert [run.at for run in view.validation_runs] == [T0, T0 + timedelta(days=1)]  # oldest first, for charts
    assert view.validation_runs[0].macro_f1 == {"DB_3": 0.81, "DB_4": 0.74}
    assert [run.drift_flagged for run in view.validation_runs] == [False, True]
    assert view.validation_runs[1].drift_reason == "abnormal-score PSI 0.31 over 0.2"


def test_registry_view_filters_by_stage_and_limits(database: Database, tmp_path: Path) -> None:
    seed_registry(database, tmp_path / "models")
    with database.session() as s:
        stage1 = registry_view.model_history(s, ModelStage.STAGE1)
        runs = registry_view.training_history(s, ModelStage.STAGE1)
        one = registry_view.validation_history(s, limit=1)

    assert [v.name for v in stage1] == ["s1-base"]
    assert runs == []
    assert [run.at for run in one] == [T0 + timedelta(days=1)]  # the newest one


def test_registry_view_is_plain_data_detached_from_the_session(database: Database, tmp_path: Path) -> None:
    seed_registry(database, tmp_path / "models")
    with database.session() as s:
        view = registry_view.registry_view(s)
        view.versions[0].metrics["macro_f1"] = -1.0  # a copy: editing it changes nothing stored
    with database.session() as s:
        again = registry_view.registry_view(s)

    assert again.versions[0].metrics.get("macro_f1") != -1.0
    assert pickle.loads(pickle.dumps(again)) == again  # what st.cache_data needs


def test_intake_view_lists_quarantined_duplicates_and_failed(database: Database) -> None:
    seeded = seed_intake(database)
    with database.session() as s:
        quarantined = intake_view.quarantined_slides(s)
        duplicates = intake_view.duplicate_slides(s)
        failed = intake_view.failed_slides(s)

    assert [(q.id, q.name, q.reason, q.path) for q in quarantined] == [
        (seeded.quarantined, "cut.jpg", "file is empty (0 bytes)", "/q/2024/05/06/00000005-cut.jpg")
    ]
    assert quarantined[0].quarantined_at is not None
    (duplicate,) = duplicates
    assert (duplicate.id, duplicate.name) == (seeded.duplicate, "copy of done-0.svs")
    assert (duplicate.first_id, duplicate.first_name, duplicate.first_status) == (seeded.first, "done-0.svs", "done")
    assert duplicate.first_received_at == T0 - timedelta(seconds=100)
    (failure,) = failed
    assert (failure.id, failure.name, failure.attempts, failure.flow_run_id) == (
        seeded.failed,
        "tiles.ndpi",
        1,
        "analyze-failed",
    )
    assert "rescan it" in failure.error  # type: ignore[operator]


def test_processing_times_and_medians(database: Database) -> None:
    seeded = seed_intake(database)
    with database.session() as s:
        times = intake_view.processing_times(s)
        two = intake_view.processing_times(s, recent=2, window=2)

    assert [t.id for t in times.recent] == list(reversed(seeded.done))  # newest result first
    assert [(t.analysis_s, t.total_s) for t in times.recent] == [(300.0, 1000.0), (120.0, 400.0), (60.0, 100.0)]
    assert [t.flow_run_id for t in times.recent] == ["analyze-2", "analyze-1", "analyze-0"]
    assert (times.window, times.median_analysis_s, times.median_total_s) == (3, 120.0, 400.0)
    assert (two.window, two.median_analysis_s, two.median_total_s) == (2, 210.0, 700.0)
    assert len(two.recent) == 2


def test_processing_times_without_a_start_time(database: Database) -> None:
    seed_intake(database)
    with database.session() as s:
        for slide in s.query(Slide).filter(Slide.started_at.is_not(None)):
            slide.started_at = None
    with database.session() as s:
        times = intake_view.processing_times(s)

    assert {t.analysis_s for t in times.recent} == {None}
    assert times.median_analysis_s is None
    assert times.median_total_s == 400.0


def test_views_of_an_empty_database(database: Database) -> None:
    with database.session() as s:
        assert intake_view.quarantined_slides(s) == []
        assert intake_view.duplicate_slides(s) == []
        assert intake_view.failed_slides(s) == []
        assert intake_view.processing_times(s) == intake_view.ProcessingTimes((), 0, None, None)
        view = registry_view.registry_view(s)
    assert view == registry_view.RegistryView((), (), ())


@pytest.mark.parametrize(("recent", "window"), [(-1, 10), (5, 0)], ids=["negative-recent", "empty-window"])
def test_processing_times_refuses_bad_bounds(database: Database, recent: int, window: int) -> None:
    with database.session() as s, pytest.raises(ValueError, match="recent must be"):
        intake_view.processing_times(s, recent=recent, window=window)
