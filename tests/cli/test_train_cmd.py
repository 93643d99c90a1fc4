"""``papscreen train``, ``evaluate``, ``analyze-image`` and ``import-legacy`` end to end, on tiny hand-made data.

The datasets are a few flat-coloured patches and crops: the point is the command's contract (what is saved,
registered, printed and refused), not accuracy, which tests/models measures on synthetic cytology.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.cli.legacy_cmd import LegacyKind, guess_kind
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage, ModelStatus
from papscreen.imaging.image_io import write_rgb
from papscreen.models.backbones import build_stage2_network
from papscreen.models.checkpoints import CARD_NAME, WEIGHTS_NAME
from papscreen.models.shipped import shipped_card
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DB_3 (dark cell patches vs light background) and DB_4 (one colour per class, folders 1..4), 6 per class."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for label, value in (("cell", 70), ("background", 225)):
            for i in range(6):
                patch = np.clip(value + rng.normal(0, 8, (20, 20, 3)), 0, 255).astype(np.uint8)
                write_rgb(root / "DB_3" / split / label / f"{i}.png", patch)
        for folder, colour in (
            ("1", (60, 40, 110)),
            ("2", (120, 90, 160)),
            ("3", (220, 180, 190)),
            ("4", (90, 20, 40)),
        ):
            for i in range(6):
                crop = np.clip(np.array(colour) + rng.normal(0, 6, (48, 48, 3)), 0, 255).astype(np.uint8)
                write_rgb(root / "DB_4" / split / folder / f"{i}.png", crop)
    field = np.full((160, 200, 3), 228, np.uint8)
    field[50:90, 80:120] = 70  # one window of a "cell" at the default working scale (0.5)
    write_rgb(root / "field.png", field)
    return root


@pytest.fixture
def cli(database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", database.url.render_as_string(hide_password=False))
    monkeypatch.setenv("PAPSCREEN_MODELS_DIR", str(tmp_path / "models"))
    return CliRunner()


def _model_folders(tmp_path: Path, stage: str) -> list[Path]:
    return sorted((tmp_path / "models").glob(f"{stage}-*"))


def test_train_stage1_saves_registers_and_evaluates(
    cli: CliRunner, database: Database, tiny_data: Path, tmp_path: Path
) -> None:
    result = cli.invoke(app, ["train", "stage1", str(tiny_data / "DB_3"), "--epochs", "2", "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert "training history" in result.output
    assert "registered as model" in result.output
    assert "champion" in result.output
    (folder,) = _model_folders(tmp_path, "stage1")
    names = {p.name for p in folder.iterdir()}
    assert {CARD_NAME, WEIGHTS_NAME, "metrics.json", "confusion_matrix.png", "training_curves.png"} <= names
    assert json.loads((folder / "metrics.json").read_text())["class_names"] == ["background", "cell"]
    Stage1Detector.from_checkpoint(folder)  # loads

    assert Stage1Detector.from_checkpoint(folder).config.snap_radius_px == 0.0  # off unless asked for

    detector_options = ["--snap-radius", "15", "--min-distance", "10", "--proposals", "--proposal-min-diameter", "12"]
    again = cli.invoke(
        app, ["train", "stage1", str(tiny_data / "DB_3"), "--epochs", "1", "--arch", "cnn20", *detector_options]
    )
    assert again.exit_code == 0, again.output
    newest = max(_model_folders(tmp_path, "stage1"), key=lambda p: p.stat().st_mtime_ns)
    config = Stage1Detector.from_checkpoint(newest).config
    assert (config.snap_radius_px, config.min_distance_px, config.use_proposals) == (15.0, 10.0, True)
    assert config.proposals.min_diameter_px == 12.0
    with database.session() as session:
        versions = queries.list_model_versions(session, ModelStage.STAGE1)
        statuses = sorted(v.status for v in versions)
        champion_id = queries.get_champion(session, ModelStage.STAGE1).id
    assert statuses == sorted([ModelStatus.CHAMPION, ModelStatus.CANDIDATE])

    by_champion = cli.invoke(app, ["evaluate", "stage1", str(tiny_data / "DB_3")])
    assert by_champion.exit_code == 0, by_champion.output
    assert "macro-F1" in by_champion.output
    by_id = cli.invoke(app, ["evaluate", str(champion_id), str(tiny_data / "DB_3"), "--out", str(tmp_path / "ev")])
    assert by_id.exit_code == 0, by_id.output
    assert (tmp_path / "ev" / "metrics.json").is_file()
    assert (tmp_path / "ev" / "roc.png").is_file()


def test_evaluate_unknown_model_is_a_clear_error_and_no_champion_means_the_shipped_model(
    cli: CliRunner, tiny_data: Path
) -> None:
    result = cli.invoke(app, ["evaluate", "999", str(tiny_data / "DB_3")])
    assert result.exit_code == 2
    assert "no model with id 999" in result.output
    result = cli.invoke(app, ["evaluate", "stage2", str(tiny_data / "DB_4")])  # no champion: the shipped model
    assert result.exit_code == 0, result.output
    shipped = f"no stage2 champion is registered: using papscreen's shipped stage2 model {shipped_card('stage2').name}"
    assert shipped in " ".join(result.output.split())


def test_train_refuses_an_unmigrated_database_before_training(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch, tiny_data: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", empty_database_url)
    monkeypatch.setenv("PAPSCREEN_MODELS_DIR", str(tmp_path / "models"))
    result = CliRunner().invoke(app, ["train", "stage1", str(tiny_data / "DB_3"), "--epochs", "1"])
    assert result.exit_code == 2
    assert "papscreen db upgrade" in result.output
    assert "training stage 1" not in result.output
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_train_stage2_then_analyze_image(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_MODELS_DIR", str(tmp_path / "models"))
    cli = CliRunner()
    args = [
        "--arch",
        "resnet18",
        "--mode",
        "finetune",
        "--epochs",
        "1",
        "--input-size",
        "32",
        "--no-register",
        "--bf16",
    ]
    result = cli.invoke(app, ["train", "stage2", str(tiny_data / "DB_4"), *args])
    assert result.exit_code == 0, result.output
    assert "not registered" in result.output
    (stage2,) = _model_folders(tmp_path, "stage2")
    classifier = Stage2Classifier.from_checkpoint(stage2)
    assert (classifier.crop_size, classifier.input_size) == (48, 32)
    assert classifier.card.training["bf16"] is True
    assert (stage2 / "metrics.json").is_file()

    stage1_args = ["--epochs", "6", "--batch-size", "4", "--lr", "0.01", "--no-register"]
    result = cli.invoke(app, ["train", "stage1", str(tiny_data / "DB_3"), *stage1_args])
    assert result.exit_code == 0, result.output
    (stage1,) = _model_folders(tmp_path, "stage1")

    out = tmp_path / "cells.csv"
    image = tiny_data / "field.png"
    result = cli.invoke(
        app, ["analyze-image", str(image), "--stage1", str(stage1), "--stage2", str(stage2), "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "cells per class" in result.output
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert rows, "the dark square should be found as a cell"
    assert set(rows[0]) == {"x", "y", "cell_score", "class", "p_NILM", "p_LSIL", "p_HSIL", "p_SCC"}
    assert all(row["class"] in {"NILM", "LSIL", "HSIL", "SCC"} for row in rows)

    missing = cli.invoke(
        app, ["analyze-image", str(tmp_path / "nope.png"), "--stage1", str(stage1), "--stage2", str(stage2)]
    )
    assert missing.exit_code == 2
    assert "nope.png" in missing.output


def test_import_legacy_torch_checkpoint_is_registered(cli: CliRunner, database: Database, tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "resnet50_pap.pth"
    torch.save({"model_state_dict": build_stage2_network("resnet50", 4).state_dict(), "epoch": 30}, checkpoint)
    assert guess_kind(checkpoint) is LegacyKind.torch
    result = cli.invoke(app, ["import-legacy", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "HSIL, LSIL, NILM, SCC" in result.output
    with database.session() as session:
        champion = queries.get_champion(session, ModelStage.STAGE2)
    assert champion is not None
    assert champion.architecture == "resnet50"
    assert Stage2Classifier.from_checkpoint(champion.file_path).classes == ("HSIL", "LSIL", "NILM", "SCC")


def test_import_legacy_refuses_a_three_class_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_MODELS_DIR", str(tmp_path / "models"))
    checkpoint = tmp_path / "three.pth"
    torch.save({"model_state_dict": build_stage2_network("resnet50", 3).state_dict()}, checkpoint)
    result = CliRunner().invoke(app, ["import-legacy", str(checkpoint), "--no-register"])
    assert result.exit_code == 2
    assert "three.pth" in result.output
    assert "3 outputs" in result.output


def test_guess_kind(tmp_path: Path) -> None:
    assert guess_kind(tmp_path / "m.h5") is LegacyKind.keras
    assert guess_kind(tmp_path / "m.keras") is LegacyKind.keras
    assert guess_kind(tmp_path) is LegacyKind.keras  # a SavedModel folder
    assert guess_kind(tmp_path / "m.pt") is LegacyKind.torch
