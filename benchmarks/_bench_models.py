"""The models the slide benchmarks run: saved folders when given, else a quick stage 1 and the default stage 2.

Speed does not depend on what the weights are, only on the architectures, the input sizes and the precision, so
a benchmark needs no trained stage 2: the default one (ResNet50, input 160 px from a 250 px crop, the card's
defaults) is built with random weights. Stage 1 is different: how many cells it finds decides how much stage 2
has to do, so it is trained for real, on a small synthetic DB_3 (the plan the test suite uses; about a minute on
two CPU cores), and finds the synthetic nuclei a trained detector would.

Models built here are saved into ``workdir`` (``stage1/``, ``stage2/``) and loaded back with
:func:`~papscreen.pipeline.load_model_pair`, exactly as the service loads its champions, so a child process can
load the same folders without training again.

Not a benchmark itself; the scripts beside it import it (``benchmarks/`` is on ``sys.path`` when a script in it
runs).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import numpy as np
import torch

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.layout import read_dataset
from papscreen.datasets.synthetic import SCALE_PLANS, ScalePlan, generate_synthetic, render_cell_crop
from papscreen.models.backbones import build_stage2_network
from papscreen.models.device import resolve_device, torch_threads
from papscreen.models.stage2 import Stage2Classifier, stage2_card
from papscreen.models.train_stage1 import train_stage1
from papscreen.pipeline import ModelPair, load_model_pair, resolve_precision

__all__ = ["STAGE1_PLAN", "bench_model_folders", "bench_models"]

STAGE1_PLAN = ScalePlan({"train": 400, "validation": 100}, {"train": 1, "validation": 1}, 4)
"""The DB_3 the test suite trains its detector on (``tests/trained.py``): enough to find every synthetic nucleus."""

STAGE2_ARCHITECTURE = "resnet50"
_CALIBRATION_CROPS = 64


def _train_stage1(folder: Path, workdir: Path) -> None:
    """Generate the small synthetic DB_3, train the default detector 15 epochs on it, save it to ``folder``."""
    data = workdir / "synthetic-db3"
    plans = cast(dict[str, ScalePlan], SCALE_PLANS)
    before = plans["small"]
    plans["small"] = STAGE1_PLAN
    try:
        generate_synthetic(data, seed=0, scale="small", overwrite=True)
    finally:
        plans["small"] = before
    with torch_threads(1):
        result = train_stage1(read_dataset(data / "DB_3"), epochs=15, seed=0)
    result.detector.to_checkpoint(folder, result.metrics, result.dataset_fingerprint, result.training)


def _build_stage2(folder: Path, int8: bool) -> None:
    """Save the default stage 2 (ResNet50, card defaults) with random weights; calibrated for int8 if asked."""
    torch.manual_seed(0)
    classifier = Stage2Classifier(build_stage2_network(STAGE2_ARCHITECTURE), stage2_card(STAGE2_ARCHITECTURE))
    if int8:
        rng = np.random.default_rng(0)
        n = len(BETHESDA_CLASSES)
        crops = np.stack(
            [render_cell_crop(rng, BETHESDA_CLASSES[i % n], classifier.crop_size) for i in range(_CALIBRATION_CROPS)]
        )
        classifier = classifier.calibrate_int8(crops)
    classifier.to_checkpoint(folder, metrics={}, training={"note": "random weights, for speed measurements only"})


def bench_model_folders(
    stage1: Path | None, stage2: Path | None, workdir: Path, *, int8: bool = False
) -> tuple[Path, Path, list[str]]:
    """The two model folders to load: those given, or ones built into ``workdir`` (reused if already there).

    Returns:
        The stage-1 folder, the stage-2 folder, and one line per model saying what it is.
    """
    lines = []
    if stage1 is None:
        stage1 = workdir / "stage1"
        if not stage1.is_dir():
            start = time.perf_counter()
            _train_stage1(stage1, workdir)
            lines.append(f"stage 1: trained here on a small synthetic DB_3 ({time.perf_counter() - start:.0f} s)")
        else:
            lines.append(f"stage 1: trained earlier on a small synthetic DB_3 ({stage1})")
    else:
        lines.append(f"stage 1: {stage1}")
    if stage2 is None:
        stage2 = workdir / ("stage2-int8" if int8 else "stage2")
        if not stage2.is_dir():
            _build_stage2(stage2, int8)
        lines.append(
            f"stage 2: default {STAGE2_ARCHITECTURE} (input 160 px, crop 250 px), random weights "
            f"(speed does not depend on their values){', int8-calibrated on 64 synthetic crops' if int8 else ''}"
        )
    else:
        lines.append(f"stage 2: {stage2}")
    return stage1, stage2, lines


def bench_models(stage1: Path | None, stage2: Path | None, device: str, precision: str, workdir: Path) -> ModelPair:
    """Load the given model folders, or build the default models into ``workdir`` first; print what is used.

    Args:
        stage1: a saved stage-1 model folder, or ``None`` to train a quick one on synthetic data (about a minute).
        stage2: a saved stage-2 model folder, or ``None`` for the default ResNet50 with random weights.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: stage-2 precision, ``auto``, ``fp32``, ``bf16`` or ``int8``
            (:func:`~papscreen.pipeline.resolve_precision`).
        workdir: where built models (and the synthetic DB_3) are written.

    Examples:
        >>> models = bench_models(None, None, "cpu", "fp32", Path("/tmp/bench"))  # doctest: +SKIP
        stage 1: trained here on a small synthetic DB_3 (62 s)
        ...
    """
    torch_device = resolve_device(device)
    chosen = resolve_precision(precision, torch_device)
    folder1, folder2, lines = bench_model_folders(stage1, stage2, workdir, int8=chosen == "int8")
    models = load_model_pair(folder1, folder2, device=torch_device, precision=chosen)
    for line in lines:
        print(line)
    print(f"models on {models.device}, stage 2 at {models.stage2.precision}: {models.names}")
    return models
