"""Evaluate a saved or freshly trained model on a dataset split, and write the evidence beside it.

An evaluation is the truth, the probabilities and the metrics computed from them (:mod:`papscreen.models.metrics`);
keeping the raw arrays lets the same run draw ROC and calibration plots without a second pass.

Stage 1 is evaluated as the classifier it is trained as: cell versus background on the DB_3 patches, each patch
classified on its own. How well it *finds* nuclei in whole fields (recall within a distance) is measured by
:func:`detection_recall`, on fields with point annotations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import softmax

from papscreen.datasets.conventions import DB3_CLASSES
from papscreen.datasets.layout import DatasetIndex
from papscreen.errors import DatasetError
from papscreen.models.metrics import ClassificationMetrics, classification_report, save_metrics
from papscreen.models.plots import write_evaluation_plots
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage1_data import load_patches
from papscreen.models.stage2 import Stage2Classifier
from papscreen.models.train_stage2 import evaluate_stage2 as _measure_stage2

__all__ = [
    "DetectionMatch",
    "Evaluation",
    "detection_recall",
    "evaluate_stage1",
    "evaluate_stage2",
    "write_evaluation",
]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Truth, probabilities and metrics of one model on one split."""

    metrics: ClassificationMetrics
    y_true: np.ndarray
    probs: np.ndarray


def evaluate_stage1(detector: Stage1Detector, index: DatasetIndex, split: str = "validation") -> Evaluation:
    """Cell-versus-background metrics of a detector's network on a DB_3 split (each patch on its own).

    Raises:
        DatasetError: not a DB_3, or the split is missing or empty.
    """
    if index.kind != "DB_3":
        raise DatasetError(index.root, f"stage 1 is evaluated on a DB_3 dataset (cell/background), not a {index.kind}")
    samples = index.splits.get(split, ())
    if not samples:
        raise DatasetError(index.root, f"the dataset has no {split} patches")
    images, labels = load_patches(samples)
    logits = np.concatenate(
        [detector.patch_logits(images[i : i + 4096].permute(0, 2, 3, 1).numpy()) for i in range(0, len(images), 4096)]
    )
    probs = softmax(logits.astype(np.float64), axis=1)
    y_true = labels.numpy()
    return Evaluation(classification_report(y_true, probs, DB3_CLASSES), y_true, probs)


def evaluate_stage2(
    classifier: Stage2Classifier, index: DatasetIndex, split: str = "validation", *, batch_size: int = 32
) -> Evaluation:
    """Bethesda-class metrics of a classifier on a DB_4 split, through its own inference path (precision, card).

    Raises:
        DatasetError: no such split, an unreadable crop, or a label the classifier has no class for.
    """
    metrics, y_true, probs = _measure_stage2(classifier, index, split, batch_size=batch_size)
    return Evaluation(metrics, y_true, probs)


def write_evaluation(
    folder: Path, evaluation: Evaluation, *, history: Sequence[Mapping[str, object]] | None = None
) -> dict[str, Path]:
    """Write ``metrics.json`` and the PNG plots (confusion, ROC, calibration, training curves) into ``folder``."""
    folder = Path(folder)
    written = {"metrics.json": save_metrics(evaluation.metrics, folder)}
    written |= write_evaluation_plots(folder, evaluation.y_true, evaluation.probs, evaluation.metrics, history=history)
    return written


@dataclass(frozen=True)
class DetectionMatch:
    """How detections in one or more fields meet annotated points."""

    points: int
    found: int
    detections: int
    fields: int

    @property
    def recall(self) -> float:
        """Share of annotated points with a detection within the distance."""
        return self.found / self.points if self.points else float("nan")

    @property
    def detections_per_field(self) -> float:
        """Mean number of detections per field."""
        return self.detections / self.fields if self.fields else float("nan")

    def __add__(self, other: DetectionMatch) -> DetectionMatch:
        """Pool the counts of two sets of fields."""
        return DetectionMatch(
            self.points + other.points,
            self.found + other.found,
            self.detections + other.detections,
            self.fields + other.fields,
        )


def detection_recall(detected_xy: np.ndarray, truth_xy: np.ndarray, max_distance: float) -> DetectionMatch:
    """Count annotated points that have a detection within ``max_distance`` pixels (one field).

    A point counts as found when any detection is close enough: annotations are not exhaustive (unannotated cells
    are real cells too), so one-to-one matching would punish correct detections of unannotated neighbours.

    Examples:
        >>> m = detection_recall(np.array([[10.0, 10.0], [50.0, 50.0]]), np.array([[12.0, 9.0], [90.0, 90.0]]), 10)
        >>> m.found, m.points, m.recall
        (1, 2, 0.5)
    """
    detected = np.asarray(detected_xy, np.float64).reshape(-1, 2)
    truth = np.asarray(truth_xy, np.float64).reshape(-1, 2)
    if len(truth) and len(detected):
        distances, _ = cKDTree(detected).query(truth, k=1)
        found = int(np.count_nonzero(distances <= max_distance))
    else:
        found = 0
    return DetectionMatch(points=len(truth), found=found, detections=len(detected), fields=1)
