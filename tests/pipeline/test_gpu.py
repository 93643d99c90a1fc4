"""The slide engine on a CUDA GPU gives what it gives on the CPU (run where a GPU is present: ``pytest -m gpu``).

Skipped on CPU-only machines (CI); run on a GPU worker before trusting it with slides. The comparison allows for
TF32 convolutions and bf16 autocast, which change the last digits of the probabilities, not the cells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from papscreen.config import Settings
from papscreen.datasets.synthetic import render_field
from papscreen.imaging.slides import ArraySlideReader
from papscreen.models.backbones import build_stage2_network
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier, stage2_card
from papscreen.models.train_stage1 import Stage1TrainingResult
from papscreen.pipeline import ModelPair, analyze, load_model_pair

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def field() -> np.ndarray:
    return render_field(np.random.default_rng(11), {"NILM": 30, "HSIL": 4, "SCC": 2}).rgb


@pytest.fixture(scope="module")
def stage2() -> Stage2Classifier:
    torch.manual_seed(0)
    return Stage2Classifier(build_stage2_network("resnet18"), stage2_card("resnet18", input_size=64, crop_size=96))


def _on(detector: Stage1Detector, device: str) -> Stage1Detector:
    return Stage1Detector(detector.network, detector.config, detector.normalisation, device)


def test_cuda_finds_the_cells_the_cpu_finds(
    trained_stage1: Stage1TrainingResult, stage2: Stage2Classifier, field: np.ndarray, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path)
    cpu = analyze(ArraySlideReader(field), ModelPair.of(trained_stage1.detector, stage2), settings)
    gpu_models = ModelPair.of(_on(trained_stage1.detector, "cuda"), stage2.with_precision("fp32", "cuda"))
    gpu = analyze(ArraySlideReader(field), gpu_models, settings)
    assert gpu.summary.device.startswith("cuda")
    assert len(cpu.cells) > 20
    distance, nearest = cKDTree(gpu.cells.xy).query(cpu.cells.xy)
    matched = distance < 0.5
    assert matched.mean() >= 0.97
    np.testing.assert_allclose(gpu.cells.probabilities[nearest[matched]], cpu.cells.probabilities[matched], atol=0.02)


def test_bf16_autocast_on_cuda_keeps_the_grades(
    trained_stage1: Stage1TrainingResult, stage2: Stage2Classifier, field: np.ndarray, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path)
    detector = _on(trained_stage1.detector, "cuda")
    fp32 = analyze(ArraySlideReader(field), ModelPair.of(detector, stage2.with_precision("fp32", "cuda")), settings)
    bf16 = analyze(ArraySlideReader(field), ModelPair.of(detector, stage2.with_precision("bf16", "cuda")), settings)
    assert bf16.summary.precision == "bf16"
    np.testing.assert_array_equal(bf16.cells.xy, fp32.cells.xy)
    np.testing.assert_allclose(bf16.cells.probabilities, fp32.cells.probabilities, atol=0.05)


def test_auto_picks_the_gpu_and_bf16(
    trained_stage1: Stage1TrainingResult, stage2: Stage2Classifier, tmp_path: Path
) -> None:
    trained_stage1.detector.to_checkpoint(tmp_path / "stage1", {}, None, {})
    stage2.to_checkpoint(tmp_path / "stage2")
    pair = load_model_pair(tmp_path / "stage1", tmp_path / "stage2", device="auto", precision="auto")
    assert pair.device.type == "cuda"
    assert pair.stage1.device.type == "cuda"
    assert pair.stage2.precision == "bf16"
