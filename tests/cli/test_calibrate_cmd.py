"""``papscreen models calibrate-int8`` and ``Stage2Classifier.attach_int8_calibration``, on tiny hand-made data.

A randomly initialised resnet18 at 32 px on 48 px crops: enough to exercise calibration, the check against fp32
and the files written, in seconds. The check's bars are relaxed where a test is about saving (a random network's
margins are too small for int8 to keep every class), and made impossible where it is about refusing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.errors import CheckpointError
from papscreen.imaging.image_io import write_rgb
from papscreen.models.backbones import build_stage2_network
from papscreen.models.card import ModelCard
from papscreen.models.checkpoints import CARD_NAME, WEIGHTS_NAME
from papscreen.models.quantize import CALIBRATION_FILE, Int8Calibration, int8_available
from papscreen.models.stage2 import Stage2Classifier, stage2_card
from tests.cli.saved_models import saved_stage1

pytestmark = pytest.mark.skipif(not int8_available(), reason="this torch build has no x86 quantized engine")

FAST = ["--observer", "minmax", "--crops", "16", "--batch-size", "16"]
LENIENT = ["--min-agreement", "0", "--max-f1-loss", "1"]


@pytest.fixture(scope="module")
def db4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DB_4 with folders 1..4 (one colour per class), 6 crops per class and split, 48 px."""
    root = tmp_path_factory.mktemp("calib") / "DB_4"
    rng = np.random.default_rng(0)
    colours = {"1": (60, 40, 110), "2": (120, 90, 160), "3": (220, 180, 190), "4": (90, 20, 40)}
    for split in ("train", "validation"):
        for folder, colour in colours.items():
            for i in range(6):
                crop = np.clip(np.array(colour) + rng.normal(0, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
                write_rgb(root / split / folder / f"{i}.png", crop)
    return root


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    folder = tmp_path / "stage2-model"
    card = stage2_card("resnet18", input_size=32, crop_size=48, metrics={"macro_f1": 0.5})
    Stage2Classifier(build_stage2_network("resnet18"), card).to_checkpoint(folder)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_calibrate_attaches_then_needs_replace_and_leaves_the_weights(model: Path, db4: Path) -> None:
    before = _snapshot(model)
    cli = CliRunner()
    first = cli.invoke(app, ["models", "calibrate-int8", str(model), str(db4), *FAST, *LENIENT])
    assert first.exit_code == 0, first.output
    assert "agreement with fp32" in first.output
    assert "saved the int8 calibration" in first.output
    assert sorted(p.name for p in model.iterdir()) == sorted([CARD_NAME, WEIGHTS_NAME, CALIBRATION_FILE])
    assert (model / WEIGHTS_NAME).read_bytes() == before[WEIGHTS_NAME]
    card = ModelCard.model_validate_json((model / CARD_NAME).read_bytes())
    entry = card.architecture_options["int8_calibration"]
    assert (entry["images"], entry["observer"], entry["keep_float"]) == (16, "minmax", ["conv1", "fc"])
    assert entry["validation_crops"] == 24
    assert 0.0 <= entry["agreement"] <= 1.0
    assert isinstance(entry["macro_f1_change"], float)
    old = ModelCard.model_validate_json(before[CARD_NAME])
    assert card.metrics == old.metrics == {"macro_f1": 0.5}
    assert card.model_dump(exclude={"architecture_options"}) == old.model_dump(exclude={"architecture_options"})

    card_bytes = (model / CARD_NAME).read_bytes()
    again = cli.invoke(app, ["models", "calibrate-int8", str(model), str(db4), *FAST, "--no-check"])
    assert again.exit_code == 2
    assert "already attached" in again.output
    assert "Traceback" not in again.output
    assert (model / CARD_NAME).read_bytes() == card_bytes

    # A failed check saves only with --force (the failure without it: test_a_failed_check_saves_nothing).
    args = [*FAST, "--replace", "--crops", "8", "--keep-float", "conv1", "--min-agreement", "1.01", "--force"]
    replaced = cli.invoke(app, ["models", "calibrate-int8", str(model), str(db4), *args])
    assert replaced.exit_code == 0, replaced.output
    assert "despite a failed check" in replaced.output
    assert (model / WEIGHTS_NAME).read_bytes() == before[WEIGHTS_NAME]
    assert not [p for p in model.iterdir() if p.name.endswith(".tmp")]
    int8 = Stage2Classifier.from_checkpoint(model, precision="int8")
    assert int8.predict_proba(np.zeros((2, 48, 48, 3), np.uint8)).shape == (2, 4)
    entry = int8.card.architecture_options["int8_calibration"]
    assert (entry["images"], entry["keep_float"]) == (8, ["conv1"])
    assert entry["validation_crops"] == 24


def test_a_failed_check_saves_nothing(model: Path, db4: Path) -> None:
    before = _snapshot(model)
    args = [*FAST, "--min-agreement", "1.01"]
    result = CliRunner().invoke(app, ["models", "calibrate-int8", str(model), str(db4), *args])
    assert result.exit_code == 1, result.output
    assert "int8 check failed" in result.output
    assert "Nothing was saved" in result.output
    assert _snapshot(model) == before


def test_a_stage1_model_or_unknown_layer_is_refused(tmp_path: Path, model: Path, db4: Path) -> None:
    stage1 = saved_stage1(tmp_path / "stage1-model")
    result = CliRunner().invoke(app, ["models", "calibrate-int8", str(stage1), str(db4), *FAST])
    assert result.exit_code == 2
    assert "stage1 model" in result.output
    assert "Traceback" not in result.output

    unknown = CliRunner().invoke(app, ["models", "calibrate-int8", str(model), str(db4), *FAST, "--keep-float", "x9"])
    assert unknown.exit_code == 2
    assert "x9" in unknown.output
    assert not (model / CALIBRATION_FILE).exists()


def test_attach_int8_calibration_library_rules(model: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    other = tmp_path / "other"
    Stage2Classifier(
        build_stage2_network("resnet18"), stage2_card("resnet18", input_size=32, crop_size=48)
    ).to_checkpoint(other)
    # attach only writes what calibration learnt: a stand-in calibration on an fp32 classifier is enough here.
    fp32 = Stage2Classifier.from_checkpoint(model)
    stand_in = Int8Calibration({"x.activation_post_process_0.min_val": torch.tensor(0.0)}, input_size=32)
    int8 = Stage2Classifier(fp32.network, fp32.card, int8_calibration=stand_in)
    before = _snapshot(other)
    with pytest.raises(CheckpointError, match="another model") as caught:
        int8.attach_int8_calibration(other)
    assert str(other) in str(caught.value)
    assert _snapshot(other) == before

    with pytest.raises(ValueError, match="no int8 calibration"):
        fp32.attach_int8_calibration(model)
    with pytest.raises(ValueError, match="checked takes only"):
        int8.attach_int8_calibration(model, checked={"sha256": "0" * 64})
    assert not (model / CALIBRATION_FILE).exists()

    weights = (model / WEIGHTS_NAME).read_bytes()
    saved = int8.attach_int8_calibration(model)  # unchecked (--no-check): the entry claims no measurement
    assert set(saved.architecture_options["int8_calibration"]) == {"file", "sha256", "observer", "images", "keep_float"}
    with pytest.raises(CheckpointError, match="already attached"):
        int8.attach_int8_calibration(model)
    int8.attach_int8_calibration(model, replace=True, checked={"agreement": 0.995, "validation_crops": 200})
    assert Stage2Classifier.from_checkpoint(model).card.architecture_options["int8_calibration"]["agreement"] == 0.995
    assert (model / WEIGHTS_NAME).read_bytes() == weights
