"""Which stage-2 precision ``auto`` picks: int8 only for a model whose int8 check passed, on a CPU with VNNI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from papscreen.errors import ConfigError
from papscreen.models.backbones import build_stage2_network
from papscreen.models.card import ModelCard
from papscreen.models.device import bf16_supported
from papscreen.models.quantize import int8_available
from papscreen.models.stage2 import Stage2Classifier, int8_check_passed, stage2_card
from papscreen.models.train_stage1 import Stage1TrainingResult
from papscreen.pipeline import models as pipeline_models
from papscreen.pipeline.models import load_model_pair, resolve_precision

CPU = torch.device("cpu")


def _card(**entry: float) -> ModelCard:
    card = stage2_card("resnet18", input_size=32)
    calibration = {"file": "int8-calibration.safetensors", "sha256": "0" * 64, **entry}
    return card.model_copy(update={"architecture_options": {"int8_calibration": calibration}})


PASSED = {"agreement": 0.995, "macro_f1_change": -0.002, "validation_crops": 762}


@pytest.mark.parametrize(
    ("entry", "passed"),
    [
        (PASSED, True),
        ({"agreement": 0.985, "macro_f1_change": 0.0}, False),
        ({"agreement": 0.999, "macro_f1_change": -0.01}, False),
        ({}, False),  # attached without a check
    ],
    ids=["passed", "low-agreement", "f1-loss", "unchecked"],
)
def test_int8_check_is_read_from_the_card(entry: dict[str, float], passed: bool) -> None:
    assert int8_check_passed(_card(**entry)) is passed


def test_auto_picks_int8_for_a_checked_model_on_a_vnni_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_models, "activation_bits", lambda: 8)
    monkeypatch.setattr(pipeline_models, "int8_available", lambda: True)
    assert resolve_precision("auto", CPU, _card(**PASSED)) == "int8"
    fallback = "bf16" if bf16_supported(CPU) else "fp32"
    assert resolve_precision("auto", CPU, _card(agreement=0.9, macro_f1_change=0.0)) == fallback
    assert resolve_precision("auto", CPU, stage2_card("resnet18", input_size=32)) == fallback
    assert resolve_precision("auto", CPU) == fallback
    assert resolve_precision("fp32", CPU, _card(**PASSED)) == "fp32"  # an explicit setting wins


def test_auto_keeps_away_from_int8_without_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_models, "activation_bits", lambda: 7)
    assert resolve_precision("auto", CPU, _card(**PASSED)) in ("fp32", "bf16")


def test_int8_on_a_gpu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_precision("int8", torch.device("cuda"))


@pytest.mark.skipif(not int8_available(), reason="this torch build has no x86 quantized engine")
def test_load_model_pair_runs_a_checked_int8_model_at_int8(
    trained_stage1: Stage1TrainingResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pipeline_models, "activation_bits", lambda: 8)
    trained_stage1.detector.to_checkpoint(tmp_path / "stage1", {}, None, {})
    card = stage2_card("resnet18", input_size=32, crop_size=32)
    Stage2Classifier(build_stage2_network("resnet18"), card).to_checkpoint(tmp_path / "stage2")
    crops = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    pair = load_model_pair(tmp_path / "stage1", tmp_path / "stage2", device="cpu", precision="auto")
    assert pair.stage2.precision != "int8"  # no calibration yet
    int8 = pair.stage2.calibrate_int8(crops, observer="minmax")
    int8.attach_int8_calibration(tmp_path / "stage2", checked=PASSED)
    pair = load_model_pair(tmp_path / "stage1", tmp_path / "stage2", device="cpu", precision="auto")
    assert pair.stage2.precision == "int8"
    assert pair.stage2.predict_proba(crops).shape == (8, 4)
