"""The retrain flow under a real Prefect API, on SQLite and PostgreSQL: gate, skips, overlap, failures."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from papscreen.bethesda import BETHESDA_CLASSES, LEGACY_DB4_FOLDERS
from papscreen.datasets.provenance import SYNTHETIC_GENERATOR
from papscreen.datasets.synthetic import render_cell_crop
from papscreen.datasets.synthetic.samples import render_stage1_patches
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.analyses import CellRecord, SummaryRecord
from papscreen.db.schema import Decision, ModelStage, ModelStatus, TrainingRun, TrainingStatus
from papscreen.flows.retrain import retrain_flow
from papscreen.imaging.image_io import write_rgb
from papscreen.models.device import torch_threads

DB4_PER_CLASS = {"train": 40, "validation": 20}
DB3_PER_CLASS = {"train": 120, "validation": 40}
WEAK = {"STAGE2_EPOCHS": "1", "SEED": "1"}
GOOD = {"STAGE2_EPOCHS": "6", "SEED": "0"}


def write_db3(root: Path, seed: int = 0) -> Path:
    """A small DB_3: synthetic 20 px cell and background patches."""
    rng = np.random.default_rng(seed)
    for split, n in DB3_PER_CLASS.items():
        cells, background = render_stage1_patches(rng, n, n)
        for i in range(n):
            write_rgb(root / split / "cell" / f"{i:04d}.png", cells[i])
            write_rgb(root / split / "background" / f"{i:04d}.png", background[i])
    return root


def write_db4(root: Path, seed: int = 0, size: int = 64) -> Path:
    """A small DB_4 in the legacy numbered layout (1=HSIL 2=LSIL 3=NILM 4=SCC), ``size`` px crops."""
    folder_of = {label: folder for folder, label in LEGACY_DB4_FOLDERS.items()}
    rng = np.random.default_rng(seed)
    for split, n in DB4_PER_CLASS.items():
        for label in BETHESDA_CLASSES:
            for i in range(n):
                write_rgb(root / split / folder_of[label] / f"{i:04d}.png", render_cell_crop(rng, label, size))
    return root


@pytest.fixture(scope="module")
def training_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DB_3 and DB_4 written once for the module; the flows only read them (their work folders are removed)."""
    root = tmp_path_factory.mktemp("retrain-data")
    write_db3(root / "DB_3")
    write_db4(root / "DB_4")
    return root


def point_flow_at(
    monkeypatch: pytest.MonkeyPatch, database: Database, data_dir: Path, models_dir: Path, **retrain: str
) -> None:
    """Environment a flow run reads: this test's database and folders, and a recipe small enough for seconds."""
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", database.url.render_as_string(hide_password=False))
    monkeypatch.setenv("PAPSCREEN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PAPSCREEN_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("PAPSCREEN_DEVICE", "cpu")
    recipe = {
        "PROMOTION_POLICY": "auto",
        "MIN_VALIDATION_SAMPLES": "1",  # the tiny validation sets here; the default refuses to decide on them
        "STAGE1_EPOCHS": "2",
        "STAGE2_ARCHITECTURE": "resnet18",
        "STAGE2_MODE": "finetune",
        "STAGE2_INPUT_SIZE": "32",
        "STAGE2_EPOCHS": "1",
    } | retrain
    for key, value in recipe.items():
        monkeypatch.setenv(f"PAPSCREEN_RETRAIN__{key}", value)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny networks train many times faster on one thread of a shared 2-core machine."""
    with torch_threads(1):
        yield


def _runs(database: Database, stage: ModelStage) -> list[TrainingRun]:
    with database.session() as session:
        return list(session.scalars(select(TrainingRun).where(TrainingRun.stage == stage).order_by(TrainingRun.id)))


@pytest.mark.usefixtures("prefect_api", "one_thread")
def test_gate_promotes_better_rejects_worse_skips_unchanged_and_never_overlaps(
    database: Database, training_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    # A weak first model: the stage has no champion, so it is promoted as the first of its stage.
    point_flow_at(monkeypatch, database, training_data, models, **WEAK)
    first = retrain_flow(stages=["stage2"])["stage2"]
    assert first["decision"] == "promoted"
    assert first["reason"].startswith("first model of its stage")

    # A properly trained challenger replaces it. The weak model's per-class sensitivities are arbitrary (one that
    # calls everything HSIL has HSIL sensitivity 1.0), so this step opens the margin; test_promotion covers it.
    # Under the "approve" policy it waits for a person: the champion does not change until an admin approves.
    point_flow_at(
        monkeypatch, database, training_data, models, **GOOD, MAX_SENSITIVITY_DROP="1.0", PROMOTION_POLICY="approve"
    )
    better = retrain_flow(stages=["stage2"])["stage2"]
    assert better["decision"] == "pending approval", better["reason"]
    assert better["reason"].endswith("waits for an admin to approve it on the Models page")
    assert better["baseline_model_version_id"] == first["model_version_id"]
    with database.session() as session:
        assert queries.get_champion(session, ModelStage.STAGE2).id == first["model_version_id"]  # type: ignore[union-attr]
        assert [r.model_version_id for r in queries.pending_approvals(session)] == [better["model_version_id"]]
        queries.approve_candidate(session, better["model_version_id"], actor="root")
    with database.session() as session:
        assert queries.get_champion(session, ModelStage.STAGE2).id == better["model_version_id"]  # type: ignore[union-attr]
        assert not queries.pending_approvals(session)
        approved = queries.list_events(session, entity_type="model_version", entity_id=better["model_version_id"])
        assert ("model.approved", "root") in [(e.action, e.actor) for e in approved]

    # A deliberately worse challenger (the weak recipe again, forced) is rejected under the default margin.
    point_flow_at(monkeypatch, database, training_data, models, **WEAK | {"SEED": "2"})
    worse = retrain_flow(stages=["stage2"], force=True)["stage2"]
    assert worse["decision"] == "rejected", worse["reason"]
    assert worse["reason"].startswith("rejected: ")

    with database.session() as session:
        champion = queries.get_champion(session, ModelStage.STAGE2)
        assert champion is not None
        assert champion.id == better["model_version_id"]
        assert queries.get_model_version(session, worse["model_version_id"]).status == ModelStatus.REJECTED  # type: ignore[union-attr]
        assert queries.get_model_version(session, first["model_version_id"]).status == ModelStatus.RETIRED  # type: ignore[union-attr]

    # Nothing changed since the last successful run: skipped, and the reason names the run and the inputs.
    unchanged = retrain_flow(stages=["stage2"])["stage2"]
    assert unchanged["status"] == "skipped"
    assert unchanged["reason"].endswith(f"unchanged since run {worse['training_run_id']}")
    assert "DB_4 fingerprint" in unchanged["reason"]
    assert "reviewed cells 0" in unchanged["reason"]

    # A run still running blocks a new one, forced or not.
    with database.session() as session:
        running = queries.start_training_run(session, stage=ModelStage.STAGE2, parameters={})
    blocked = retrain_flow(stages=["stage2"], force=True)["stage2"]
    assert blocked["status"] == "skipped"
    assert blocked["reason"].startswith(f"retraining already running (run {running.id}, started ")

    runs = _runs(database, ModelStage.STAGE2)
    decided = [(r.status, r.decision) for r in runs if r.id != running.id]
    assert decided == [
        (TrainingStatus.SUCCEEDED, Decision.PROMOTED),
        (TrainingStatus.SUCCEEDED, Decision.PROMOTED),
        (TrainingStatus.SUCCEEDED, Decision.REJECTED),
        (TrainingStatus.SKIPPED, Decision.SKIPPED),
        (TrainingStatus.SKIPPED, Decision.SKIPPED),
    ]
    assert all(r.reason for r in runs if r.id != running.id)
    rejected = runs[2]
    assert rejected.model_version_id == worse["model_version_id"]
    assert rejected.baseline_model_version_id == better["model_version_id"]
    assert set(rejected.metrics) >= {"challenger", "champion", "comparison"}
    assert (
        rejected.metrics["challenger"]["macro_f1"] < rejected.metrics["champion"]["macro_f1"]
        or (rejected.metrics["comparison"]["failed"])
    )
    assert rejected.history
    assert rejected.code_fingerprint
    assert rejected.dataset_fingerprint
    assert rejected.parameters["recipe"]["epochs"] == 1


@pytest.mark.usefixtures("prefect_api", "one_thread")
def test_stage1_trains_and_a_missing_db4_fails_the_flow_with_its_folder(
    database: Database, training_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(training_data / "DB_3", data / "DB_3")
    point_flow_at(monkeypatch, database, data, tmp_path / "models")

    state = retrain_flow(return_state=True)

    assert state.is_failed()
    assert "stage2 (DB_4) retraining failed" in state.message
    assert str(data / "DB_4") in state.message
    (stage1_run,) = _runs(database, ModelStage.STAGE1)
    assert stage1_run.status == TrainingStatus.SUCCEEDED
    assert stage1_run.decision == Decision.PROMOTED
    assert stage1_run.metrics["challenger"]["per_class"]["cell"]["sensitivity"] is not None
    (stage2_run,) = _runs(database, ModelStage.STAGE2)
    assert stage2_run.status == TrainingStatus.FAILED
    assert str(data / "DB_4") in (stage2_run.error or "")
    assert "no DB_4 folder" in (stage2_run.error or "")


def _slide_with_reviewed_cell(database: Database, scan: Path) -> int:
    """A done slide whose one cell a reviewer corrected to HSIL; returns the cell's id."""
    with database.session() as session:
        common = {"architecture": "test", "file_path": "/nowhere", "auto_champion": False}
        stage1 = queries.register_model_version(session, stage=ModelStage.STAGE1, name="s1", sha256="1" * 64, **common)
        stage2 = queries.register_model_version(session, stage=ModelStage.STAGE2, name="s2", sha256="2" * 64, **common)
        claim = queries.claim_scan(session, sha256="f" * 64, original_name=scan.name, size_bytes=scan.stat().st_size)
        queries.mark_stored(session, claim.slide.id, stored_path=str(scan))
        cell = CellRecord(100.0, 80.0, 90, 70, 110, 90, 0.9, "NILM", dict.fromkeys(BETHESDA_CLASSES, 0.25), 0.75)
        summary = SummaryRecord("NILM", "satisfactory", 0.75, 1, {"NILM": 1})
        analysis = queries.store_analysis(
            session,
            slide_id=claim.slide.id,
            stage1_model_id=stage1.id,
            stage2_model_id=stage2.id,
            cells=[cell],
            summary=summary,
        )
        (stored,) = analysis.cells
        queries.review_cell(session, stored.id, label="HSIL", reviewer="dr test")
        slide_id, cell_id = claim.slide.id, stored.id
    with database.session() as session:  # a correction reaches training once its slide is signed out
        assert queries.reviewed_cells(session, signed_out_only=True) == []
        queries.sign_out(
            session, slide_id, interpretation="HSIL", user="dr test", role="pathologist", require_gallery_viewed=False
        )
    with database.session() as session:
        assert [c.cell_id for c in queries.reviewed_cells(session, signed_out_only=True)] == [cell_id]
    return cell_id


@pytest.mark.usefixtures("prefect_api", "one_thread")
def test_a_reviewer_corrected_cell_is_added_to_stage2_training(
    database: Database, training_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = tmp_path / "scan.png"
    write_rgb(scan, np.random.default_rng(3).integers(0, 255, (200, 240, 3), dtype=np.uint8))
    cell_id = _slide_with_reviewed_cell(database, scan)
    point_flow_at(monkeypatch, database, training_data, tmp_path / "models")

    result = retrain_flow(stages=["stage2"])["stage2"]

    assert result["reviewed_crops"] == {"HSIL": 1}
    (run,) = _runs(database, ModelStage.STAGE2)
    assert run.parameters["reviewed_cells"] == 1
    db4_train = DB4_PER_CLASS["train"] * len(BETHESDA_CLASSES)
    assert run.metrics["training"]["train_crops"] == db4_train + 1
    assert run.metrics["training"]["validation_crops"] == DB4_PER_CLASS["validation"] * len(BETHESDA_CLASSES)
    assert not list(training_data.glob(".retrain-*")), "the working folder of the combined dataset is removed"
    assert cell_id > 0


@pytest.mark.usefixtures("prefect_api", "one_thread")
def test_a_challenger_validated_on_synthetic_data_never_replaces_a_real_champion(
    database: Database, training_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's nightly retraining trains on synthetic data; the shipped real models must survive it."""
    models = tmp_path / "models"
    # The first, weak model is trained on unsigned crops: real, as far as papscreen can tell (a lab's own DB_4).
    point_flow_at(monkeypatch, database, training_data, models, **WEAK)
    real = retrain_flow(stages=["stage2"])["stage2"]
    assert real["decision"] == "promoted"

    # The same crops signed by the synthetic generator: a far better challenger, and still rejected.
    synthetic = tmp_path / "synthetic"
    shutil.copytree(training_data / "DB_4", synthetic / "DB_4")
    manifest = {"dataset": "DB_4", "generator": {"name": SYNTHETIC_GENERATOR, "version": 1}}
    (synthetic / "DB_4" / "manifest.json").write_text(json.dumps(manifest))
    point_flow_at(monkeypatch, database, synthetic, models, **GOOD, MAX_SENSITIVITY_DROP="1.0")
    challenger = retrain_flow(stages=["stage2"])["stage2"]
    assert challenger["decision"] == "rejected", challenger["reason"]
    assert "synthetic data only" in challenger["reason"]
    with database.session() as session:
        champion = queries.get_champion(session, ModelStage.STAGE2)
        assert champion is not None
        assert champion.id == real["model_version_id"]
        run = session.get(TrainingRun, challenger["training_run_id"])
        assert run is not None
        assert run.metrics["comparison"]["failed"] == ["validation data"]
        assert (run.metrics["comparison"]["challenger_data"], run.metrics["comparison"]["champion_data"]) == (
            "synthetic",
            "real",
        )
