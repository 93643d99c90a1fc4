"""The real-data recipe: both stages trained on every annotated field, and the field verdict's operating point.

:func:`train_real_models` is what the cross-validation in :mod:`papscreen.models.real_cv` measures, applied once to
all the data: the fields are split once more by field (about a sixth to validation, for early stopping, the
softmax temperature and the field scorer's threshold), stage 1 and stage 2 are trained with the given recipes,
and the stage-2 card gets the field scorer with the figures it gave on the validation fields. Seeded: the same
data, recipes and seed give the same split and, on a CPU, the same weights.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papscreen.datasets.build import plan_build
from papscreen.datasets.real import read_real_cells, write_cell_crops
from papscreen.models.field_score import FieldScorer, OperatingPoint
from papscreen.models.real_cv import (
    FieldRecipe,
    Stage1Recipe,
    Stage2Recipe,
    default_build_options,
    field_cell_ids,
    field_operating_point,
    hard_negatives,
    inner_split,
    train_classifier,
    train_detector,
)
from papscreen.models.train_stage1 import Stage1TrainingResult
from papscreen.models.train_stage2 import Stage2TrainingResult

__all__ = ["RealModels", "train_real_models"]


@dataclass(frozen=True)
class RealModels:
    """Both trained stages, the field scorer put on stage 2's card, and what it gave on the validation fields."""

    stage1: Stage1TrainingResult
    stage2: Stage2TrainingResult
    scorer: FieldScorer
    operating_point: OperatingPoint
    validation_fields: tuple[str, ...]
    seconds: float


def train_real_models(
    data_dir: Path,
    work: Path,
    stage1: Stage1Recipe,
    stage2: Stage2Recipe,
    verdict: FieldRecipe,
    *,
    seed: int = 0,
    device: Any = "cpu",
    log: Callable[[str], None] = print,
) -> RealModels:
    """Train both stages on the annotated fields of ``data_dir`` (``cric-dev/`` layout) and choose the verdict."""
    started = time.perf_counter()
    cells = read_real_cells(data_dir)
    crops = write_cell_crops(cells, work / f"cells{stage2.crop_size}", stage2.crop_size)
    plan = plan_build(Path(data_dir) / "cric-dev", default_build_options(seed))
    train_groups, val_groups = inner_split(cells, sorted(cells.points_by_field()), seed + 1)
    log(f"{len(train_groups)} training fields, {len(val_groups)} validation fields")

    detector = train_detector(plan, train_groups, val_groups, stage1, work / "stage1", device)
    log(f"stage 1 trained: validation F1 {detector.metrics.get('f1', float('nan')):.3f}")
    train_ids, val_ids = field_cell_ids(cells, train_groups), field_cell_ids(cells, val_groups)
    negatives = hard_negatives(detector.detector, cells, train_groups, val_groups, stage2, work, seed)
    classifier = train_classifier(crops, cells.labels(), train_ids, val_ids, stage2, seed, device, log, negatives)
    log(f"stage 2 trained: validation macro-F1 {classifier.metrics.macro_f1:.3f}")

    scorer, point = field_operating_point(detector.detector, classifier.classifier, cells, val_groups, verdict)
    log(f"field verdict: threshold {point.threshold:.3f} (sensitivity {point.sensitivity:.2f}, specificity "
        f"{point.specificity:.2f} on {point.fields} validation fields)")  # fmt: skip
    recipe = {"stage1": dataclasses.asdict(stage1), "stage2": dataclasses.asdict(stage2), "seed": seed}
    data = {
        "path": str(data_dir),
        "source_fingerprint": plan.source_fingerprint,
        "fields": len(cells.fields),
        "cells": len(train_ids) + len(val_ids),
        "validation_fields": sorted(val_groups),
    }
    scored = classifier.classifier.with_card(
        field_scorer=scorer.to_dict() | {**dataclasses.asdict(point), "min_sensitivity": verdict.min_sensitivity},
        training={**classifier.classifier.card.training, "recipe": recipe, "data": data, "data_provenance": "real"},
    )
    detector = dataclasses.replace(
        detector, training={**detector.training, "recipe": recipe, "data": data, "data_provenance": "real"}
    )
    return RealModels(
        stage1=detector,
        stage2=dataclasses.replace(classifier, classifier=scored),
        scorer=scorer,
        operating_point=point,
        validation_fields=tuple(val_groups),
        seconds=time.perf_counter() - started,
    )
