"""Stage 2: the classifier's inference, checkpoints and errors; training on synthetic DB_4 to the acceptance bar.

Networks here are small (ResNet18 at a 48 px input, random initialisation) so the whole file runs in about two
minutes on two CPU cores; nothing is downloaded (``TORCH_HOME`` points at an empty folder where weights are
asked for).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from papscreen.errors import CheckpointError, PretrainedWeightsMissingError
from papscreen.models.backbones import build_stage2_network
from papscreen.models.card import ModelCard
from papscreen.models.checkpoints import CARD_NAME, WEIGHTS_NAME, file_sha256
from papscreen.models.stage2 import Stage2Classifier, stage2_card

SMALL_CROP = 64
SMALL_INPUT = 32


@pytest.fixture(scope="module")
def tiny_classifier() -> Stage2Classifier:
    """An untrained ResNet18 at a 32 px input, temperature 1.7: enough to test plumbing, fast."""
    torch.manual_seed(0)
    card = stage2_card("resnet18", input_size=SMALL_INPUT, crop_size=SMALL_CROP, temperature=1.7)
    return Stage2Classifier(build_stage2_network("resnet18").eval(), card)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (6, SMALL_CROP, SMALL_CROP, 3), dtype=np.uint8)


def _rewrite_card(folder: Path, **changes: object) -> None:
    path = folder / CARD_NAME
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_probabilities_apply_the_temperature(tiny_classifier: Stage2Classifier, crops: np.ndarray) -> None:
    logits = tiny_classifier.predict_logits(crops, batch_size=4)
    probs = tiny_classifier.predict_proba(list(crops), batch_size=4)
    expected = torch.softmax(torch.from_numpy(logits) / 1.7, dim=1).numpy()
    assert logits.shape == probs.shape == (6, 4)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert tiny_classifier.predict_proba(np.zeros((0, SMALL_CROP, SMALL_CROP, 3), np.uint8)).shape == (0, 4)


def test_crop_sizes_are_fitted_not_stretched(tiny_classifier: Stage2Classifier, crops: np.ndarray) -> None:
    big = np.pad(crops, ((0, 0), (8, 8), (8, 8), (0, 0)), mode="constant")
    np.testing.assert_allclose(tiny_classifier.predict_logits(big), tiny_classifier.predict_logits(crops), atol=1e-4)
    small = crops[:, 8:-8, 8:-8]  # mirrored outwards to the crop size, then classified
    assert tiny_classifier.predict_proba(small).shape == (6, 4)


def test_bf16_agrees_with_fp32(tiny_classifier: Stage2Classifier, crops: np.ndarray) -> None:
    bf16 = tiny_classifier.with_precision("bf16")
    np.testing.assert_allclose(bf16.predict_proba(crops), tiny_classifier.predict_proba(crops), atol=0.05)


def test_int8_needs_a_calibration_and_the_cpu(tiny_classifier: Stage2Classifier) -> None:
    with pytest.raises(ValueError, match="calibrate_int8"):
        tiny_classifier.with_precision("int8")
    with pytest.raises(ValueError, match="CPU only"):
        Stage2Classifier(tiny_classifier.network, tiny_classifier.card, "cuda", "int8")


def test_checkpoint_round_trip_is_identical(
    tiny_classifier: Stage2Classifier, crops: np.ndarray, tmp_path: Path
) -> None:
    card = tiny_classifier.to_checkpoint(tmp_path / "m", {"macro_f1": 0.5}, "f" * 64, {"epochs": 1})
    loaded = Stage2Classifier.from_checkpoint(tmp_path / "m")
    assert isinstance(card, ModelCard)
    assert (loaded.card.stage, loaded.temperature, loaded.crop_size) == ("stage2", 1.7, SMALL_CROP)
    assert (loaded.card.dataset_fingerprint, loaded.card.metrics) == ("f" * 64, {"macro_f1": 0.5})
    assert {"torch", "torchvision", "numpy"} <= set(loaded.card.library_versions)
    np.testing.assert_array_equal(loaded.predict_proba(crops), tiny_classifier.predict_proba(crops))
    with pytest.raises(CheckpointError, match="already saved"):
        tiny_classifier.to_checkpoint(tmp_path / "m")


def _saved(classifier: Stage2Classifier, folder: Path) -> Path:
    classifier.to_checkpoint(folder)
    return folder


@pytest.mark.parametrize(
    ("damage", "match", "culprit"),
    [
        ("classes", "3 classes", WEIGHTS_NAME),
        ("corrupt", "not a readable safetensors", WEIGHTS_NAME),
        ("altered", "sha256", WEIGHTS_NAME),
        ("stage1", "stage1 model", CARD_NAME),
        ("architecture", "unknown stage-2 architecture", CARD_NAME),
        ("no-int8", "without an int8 calibration", CARD_NAME),
    ],
    ids=["class-count", "corrupt-safetensors", "altered-weights", "stage1-card", "unknown-architecture", "no-int8"],
)
def test_bad_checkpoints_name_the_file(
    tiny_classifier: Stage2Classifier, tmp_path: Path, damage: str, match: str, culprit: str
) -> None:
    folder = _saved(tiny_classifier, tmp_path / "m")
    weights = folder / WEIGHTS_NAME
    precision = "fp32"
    if damage == "classes":
        _rewrite_card(folder, classes=["NILM", "LSIL", "HSIL"])
    elif damage in ("corrupt", "altered"):
        weights.write_bytes(b"\x00garbage" * 10)
        if damage == "corrupt":  # the card's hash is made to match: the file itself is unreadable
            _rewrite_card(folder, weights_sha256=file_sha256(weights))
    elif damage == "stage1":
        _rewrite_card(folder, stage="stage1", working_scale=0.5)
    elif damage == "architecture":
        _rewrite_card(folder, architecture="vgg11")
    else:
        precision = "int8"
    with pytest.raises(CheckpointError, match=match) as error:
        Stage2Classifier.from_checkpoint(folder, precision=precision)
    assert error.value.path.name == culprit
    assert str(error.value.path) in str(error.value)


def test_pretrained_auto_without_weights_says_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    with pytest.raises(PretrainedWeightsMissingError, match="never downloads") as error:
        build_stage2_network("resnet18", pretrained="auto")
    assert error.value.path.parent == tmp_path / "empty-torch-home" / "hub" / "checkpoints"
    assert "resnet18" in str(error.value)
    assert not (tmp_path / "empty-torch-home" / "hub" / "checkpoints").exists()
