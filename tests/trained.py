"""Models trained once per test session on synthetic data, shared by the model and pipeline tests.

Training is the slow part of the suite (about three minutes for stage 2 on two CPU cores), so the stage-1
detector and the stage-2 classifier that reach the acceptance bars are trained once and used by every test that
needs a model that works: the stage tests check their metrics, the pipeline tests analyse synthetic slides
with them. Torch runs on one thread while training: on a shared 2-core machine two threads that wait for each
other were measured many times slower for networks this small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.layout import DatasetIndex, read_dataset
from papscreen.datasets.synthetic import SCALE_PLANS, ScalePlan, generate_synthetic, render_cell_crop
from papscreen.imaging.image_io import write_rgb
from papscreen.models.device import torch_threads
from papscreen.models.train_stage1 import Stage1TrainingResult, train_stage1
from papscreen.models.train_stage2 import Stage2TrainingResult, train_stage2

__all__ = [
    "STAGE1_PLAN",
    "STAGE2_RECIPE",
    "stage1_synthetic",
    "stage2_acceptance_db4",
    "trained_model_folders",
    "trained_stage1",
    "trained_stage2",
]

STAGE1_PLAN = ScalePlan({"train": 400, "validation": 100}, {"train": 1, "validation": 1}, 4)
"""Enough DB_3 for a detector that finds every synthetic nucleus; DB_4 is not used."""

STAGE2_RECIPE = {
    "architecture": "resnet18",
    "mode": "finetune",
    "epochs": 12,
    "patience": 12,
    "input_size": 64,
    "crop_size": 96,
    "augment": "dihedral",
    "lr": 3e-3,
    "seed": 0,
}
"""ResNet18 from random initialisation on 96 px crops: reaches the 0.90 macro-F1 bar in about three minutes."""


@pytest.fixture(scope="session")
def stage1_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (DB_3 of 400/100 patches per class, a token DB_4, four fields)."""
    out = tmp_path_factory.mktemp("stage1") / "synthetic"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SCALE_PLANS, "small", STAGE1_PLAN)  # type: ignore[arg-type]
        generate_synthetic(out, seed=0, scale="small")
    return out


@pytest.fixture(scope="session")
def trained_stage1(stage1_synthetic: Path) -> Stage1TrainingResult:
    """The default stage-1 detector trained 15 epochs on ``stage1_synthetic``'s DB_3."""
    with torch_threads(1):
        return train_stage1(read_dataset(stage1_synthetic / "DB_3"), epochs=15, seed=0)


@pytest.fixture(scope="session")
def stage2_acceptance_db4(tmp_path_factory: pytest.TempPathFactory) -> DatasetIndex:
    """200 training and 50 validation synthetic crops per class, 96 px (the window the recipe uses)."""
    root = tmp_path_factory.mktemp("acceptance")
    for split, per_class, seed in (("train", 200, 1), ("validation", 50, 2)):
        rng = np.random.default_rng(seed)
        for label in BETHESDA_CLASSES:
            for i in range(per_class):
                write_rgb(root / split / label / f"{i:04d}.png", render_cell_crop(rng, label, 96))
    return read_dataset(root)


@pytest.fixture(scope="session")
def trained_stage2(stage2_acceptance_db4: DatasetIndex) -> Stage2TrainingResult:
    """The stage-2 classifier trained with ``STAGE2_RECIPE`` on ``stage2_acceptance_db4``."""
    with torch_threads(1):
        return train_stage2(stage2_acceptance_db4, **STAGE2_RECIPE)


@pytest.fixture(scope="session")
def trained_model_folders(
    tmp_path_factory: pytest.TempPathFactory, trained_stage1: Stage1TrainingResult, trained_stage2: Stage2TrainingResult
) -> tuple[Path, Path]:
    """The session's two models saved as folders (safetensors + card), as `papscreen train` leaves them."""
    root = tmp_path_factory.mktemp("trained-models")
    stage1 = trained_stage1.detector
    stage1.to_checkpoint(root / "stage1", trained_stage1.metrics, trained_stage1.dataset_fingerprint, {})
    trained_stage2.save(root / "stage2")
    return root / "stage1", root / "stage2"
