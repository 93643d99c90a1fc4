"""The validate flow under a real Prefect API, on SQLite and PostgreSQL: metrics over time, notes and drift."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.layout import read_dataset
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.analyses import CellRecord, SummaryRecord
from papscreen.db.queries.validation import list_validation_runs
from papscreen.flows.validate import validate_flow
from papscreen.models.checkpoints import load_weights
from papscreen.models.device import torch_threads
from papscreen.models.train_stage1 import train_stage1
from papscreen.models.train_stage2 import train_stage2
from papscreen.tasks.registry import register_saved_model
from tests.flows.test_retrain import point_flow_at, write_db3, write_db4


@pytest.fixture(scope="module")
def validation_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A data folder (DB_3, DB_4) and two small models trained on it, once for the module."""
    root = tmp_path_factory.mktemp("validate")
    data = root / "data"
    write_db3(data / "DB_3", seed=5)
    write_db4(data / "DB_4", seed=5)
    with torch_threads(1):
        s1 = train_stage1(read_dataset(data / "DB_3"), epochs=2, seed=0)
        s1.detector.to_checkpoint(root / "stage1", s1.metrics, s1.dataset_fingerprint, s1.training)
        s2 = train_stage2(
            read_dataset(data / "DB_4"),
            architecture="resnet18",
            mode="finetune",
            epochs=2,
            input_size=32,
            crop_size=64,
            augment="none",
        )
        s2.save(root / "stage2")
    return data, root / "stage1", root / "stage2"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Scoring tiny networks is faster on one thread of a shared 2-core machine."""
    with torch_threads(1):
        yield


def _register(database: Database, *folders: Path) -> list[int]:
    return [register_saved_model(database, f, load_weights(f)[1], actor="test").id for f in folders]


def _recent_slide(database: Database, stage1_id: int, stage2_id: int, cells: int, label: str, suspicion: float) -> None:
    """A done slide whose current analysis has ``cells`` cells all predicted ``label``."""
    probabilities = dict.fromkeys(BETHESDA_CLASSES, 0.0) | {label: 1.0}
    record = CellRecord(10.0, 10.0, 0, 0, 20, 20, 0.9, label, probabilities, suspicion)
    with database.session() as session:
        claim = queries.claim_scan(session, sha256=os.urandom(32).hex(), original_name="s.png", size_bytes=1)
        queries.store_analysis(
            session,
            slide_id=claim.slide.id,
            stage1_model_id=stage1_id,
            stage2_model_id=stage2_id,
            cells=[record] * cells,
            summary=SummaryRecord(label, "satisfactory", suspicion, cells, {label: cells}),
        )


@pytest.mark.usefixtures("prefect_api")
def test_without_champions_nothing_is_recorded(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_flow_at(monkeypatch, database, tmp_path / "data", tmp_path / "models")

    result = validate_flow()

    assert result["recorded"] is False
    assert "no champion for stage1 and stage2" in result["reason"]
    with database.session() as session:
        assert list_validation_runs(session) == []


@pytest.mark.usefixtures("prefect_api", "one_thread")
def test_champions_are_scored_recorded_over_time_and_drift_is_flagged(
    database: Database,
    validation_setup: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, stage1, stage2 = validation_setup
    stage1_id, stage2_id = _register(database, stage1, stage2)
    point_flow_at(monkeypatch, database, data, tmp_path / "models")
    monkeypatch.setenv("PAPSCREEN_VALIDATION__REFERENCE_DIR", str(tmp_path / "no-reference"))

    quiet = validate_flow()

    assert quiet["recorded"] is True
    assert set(quiet["metrics"]) == {"DB_3", "DB_4"}
    assert quiet["drift_flagged"] is False
    assert quiet["drift_reason"].startswith("not enough recent data: 0 cells")
    assert any(str(tmp_path / "no-reference") in note for note in quiet["notes"])

    # The reference set is scored when it exists; the recent slides (all SCC, abnormal score 0.99) have drifted.
    monkeypatch.setenv("PAPSCREEN_VALIDATION__REFERENCE_DIR", str(data / "DB_4"))
    _recent_slide(database, stage1_id, stage2_id, cells=150, label="SCC", suspicion=0.99)
    drifted = validate_flow()

    assert set(drifted["metrics"]) == {"DB_3", "DB_4", "reference"}
    assert drifted["metrics"]["reference"] == pytest.approx(drifted["metrics"]["DB_4"])
    assert drifted["drift_flagged"] is True
    assert drifted["recent_slides"] == 1
    with database.session() as session:
        newest, oldest = list_validation_runs(session)
        assert (newest.id, oldest.id) == (drifted["validation_run_id"], quiet["validation_run_id"])
        assert newest.drift_flagged is True
        assert oldest.drift_flagged is False
        assert (newest.stage1_model_id, newest.stage2_model_id) == (stage1_id, stage2_id)
        assert newest.metrics["DB_3"]["stage"] == "stage1"
        assert newest.drift["recent_classes"] == {"SCC": 150}
        flagged = {c["name"] for c in newest.drift["checks"] if c["flagged"]}
        assert "abnormal score" in flagged
        assert oldest.notes is not None
        assert "no-reference" in oldest.notes
        assert newest.notes is None
