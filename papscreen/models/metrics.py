"""How well a classifier does: one report for both stages, written as ``metrics.json`` beside the model.

Screening cares about more than accuracy. A missed HSIL costs far more than a false alarm, so the report
gives each class's sensitivity and specificity; classes are imbalanced, so it gives balanced accuracy and
macro-F1; thresholds are tuned on probabilities, so it gives ROC AUC and the expected calibration error.
Every number comes from scikit-learn or torchmetrics (not formulas written here), except specificity,
which is read off the confusion matrix.

A number that is undefined on the data (the sensitivity of a class with no example, the AUC of a class
that is absent or the only one present) is ``None``, never 0 and never a crash, so a small validation split
that lacks SCC still gets a report, and JSON never holds ``NaN``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from torchmetrics.functional.classification import multiclass_calibration_error

__all__ = [
    "ECE_BINS",
    "METRICS_NAME",
    "ClassMetrics",
    "ClassificationMetrics",
    "classification_report",
    "load_metrics",
    "save_metrics",
]

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error (the usual choice since Guo et al. 2017)."""

METRICS_NAME = "metrics.json"

_PROBABILITY_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ClassMetrics:
    """One class against the rest; ``None`` where the data leave a number undefined."""

    name: str
    support: int
    sensitivity: float | None
    specificity: float | None
    precision: float | None
    f1: float | None
    auc: float | None


@dataclass(frozen=True)
class ClassificationMetrics:
    """Everything :func:`classification_report` measures, immutable and JSON-ready via :meth:`to_dict`."""

    class_names: tuple[str, ...]
    n_samples: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    macro_auc: float | None
    ece: float
    confusion: tuple[tuple[int, ...], ...]
    """Counts; row = true class, column = predicted class, both in ``class_names`` order."""
    per_class: tuple[ClassMetrics, ...]

    def for_class(self, name: str) -> ClassMetrics:
        """The metrics of one class by name.

        Examples:
            >>> m = classification_report(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ["bg", "cell"])
            >>> m.for_class("cell").sensitivity
            1.0
        """
        for item in self.per_class:
            if item.name == name:
                return item
        raise KeyError(f"no class {name!r}; classes are {self.class_names}")

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, dicts, ints, floats and ``None``: ready for ``json.dumps`` (no ``NaN``).

        ``per_class`` is keyed by class name, in class order, so ``metrics.json`` reads naturally.

        Examples:
            >>> m = classification_report(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ["bg", "cell"])
            >>> m.to_dict()["per_class"]["cell"]["support"]
            1
            >>> ClassificationMetrics.from_dict(json.loads(json.dumps(m.to_dict()))) == m
            True
        """
        return {
            "class_names": list(self.class_names),
            "n_samples": self.n_samples,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "macro_auc": self.macro_auc,
            "ece": self.ece,
            "ece_bins": ECE_BINS,
            "confusion": [list(row) for row in self.confusion],
            "per_class": {
                c.name: {
                    "support": c.support,
                    "sensitivity": c.sensitivity,
                    "specificity": c.specificity,
                    "precision": c.precision,
                    "f1": c.f1,
                    "auc": c.auc,
                }
                for c in self.per_class
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassificationMetrics:
        """Rebuild from :meth:`to_dict`'s output (e.g. a ``metrics.json`` read back)."""
        per_class = tuple(ClassMetrics(name=name, **values) for name, values in data["per_class"].items())
        return cls(
            class_names=tuple(data["class_names"]),
            n_samples=int(data["n_samples"]),
            accuracy=float(data["accuracy"]),
            balanced_accuracy=float(data["balanced_accuracy"]),
            macro_f1=float(data["macro_f1"]),
            macro_auc=None if data["macro_auc"] is None else float(data["macro_auc"]),
            ece=float(data["ece"]),
            confusion=tuple(tuple(int(v) for v in row) for row in data["confusion"]),
            per_class=per_class,
        )


def _defined(value: float) -> float | None:
    """A plain float, or ``None`` for scikit-learn's NaN meaning 'undefined on these data'."""
    value = float(value)
    return None if math.isnan(value) else value


def _check_inputs(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    if k < 2 or len(set(class_names)) != k:
        raise ValueError(f"class_names must be at least two distinct names, got {list(class_names)}")
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"probs must have shape (N, {k}) for classes {list(class_names)}, got {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0] or y.shape[0] == 0:
        raise ValueError(f"y_true must have shape ({p.shape[0]},) and at least one sample, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= k:
        raise ValueError(f"y_true must hold class indices 0..{k - 1}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be probabilities in [0, 1] (apply softmax to logits first)")
    if np.abs(p.sum(axis=1) - 1).max() > _PROBABILITY_SUM_TOLERANCE:
        raise ValueError("each row of probs must sum to 1 (apply softmax to logits first)")
    return y.astype(np.int64), p


def _one_vs_rest_auc(is_class: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of one class against the rest; ``None`` when only one side is present (AUC is undefined)."""
    if is_class.all() or not is_class.any():
        return None
    return float(roc_auc_score(is_class, scores))


def classification_report(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> ClassificationMetrics:
    """Measure a classifier from true labels and predicted probabilities (binary or multi-class alike).

    The prediction is the most probable class. Per-class numbers are one-versus-rest. ``macro_f1`` and
    ``macro_auc`` average over the classes where the number is defined (``macro_auc`` is ``None`` when no
    class has one). The calibration error is top-label ECE over ``ECE_BINS`` equal-width bins.

    Args:
        y_true: true class indices, shape (N,).
        probs: predicted probabilities, shape (N, K), rows summing to 1 (not logits: that mistake is refused).
        class_names: the K class names, in output order.

    Raises:
        ValueError: shapes disagree, labels out of range, or ``probs`` are not probabilities.

    Examples:
        >>> y = np.array([0, 0, 1, 1])
        >>> p = np.array([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.1, 0.9]])
        >>> m = classification_report(y, p, ["background", "cell"])
        >>> m.accuracy, m.confusion
        (0.75, ((1, 1), (0, 2)))
        >>> m.for_class("cell").sensitivity, m.for_class("cell").specificity, m.macro_auc
        (1.0, 0.5, 1.0)
    """
    y, p = _check_inputs(y_true, probs, class_names)
    k = len(class_names)
    labels = list(range(k))
    predicted = p.argmax(axis=1)

    confusion = confusion_matrix(y, predicted, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=np.nan)
    with warnings.catch_warnings():
        # Warns when a predicted class is absent from y_true; the score (mean recall of present classes) is right.
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y, predicted)
    macro_f1 = f1_score(y, predicted, labels=labels, average="macro", zero_division=np.nan)

    total = confusion.sum()
    per_class = []
    for c, name in enumerate(class_names):
        negatives = total - confusion[c, :].sum()
        true_negatives = negatives - (confusion[:, c].sum() - confusion[c, c])
        per_class.append(
            ClassMetrics(
                name=name,
                support=int(support[c]),
                sensitivity=_defined(recall[c]),
                specificity=float(true_negatives / negatives) if negatives else None,
                precision=_defined(precision[c]),
                f1=_defined(f1[c]),
                auc=_one_vs_rest_auc(y == c, p[:, c]),
            )
        )
    aucs = [c.auc for c in per_class if c.auc is not None]
    ece = multiclass_calibration_error(
        torch.from_numpy(p), torch.from_numpy(y), num_classes=k, n_bins=ECE_BINS, norm="l1"
    )
    return ClassificationMetrics(
        class_names=tuple(class_names),
        n_samples=int(y.shape[0]),
        accuracy=float(accuracy_score(y, predicted)),
        balanced_accuracy=float(balanced),
        macro_f1=float(macro_f1),
        macro_auc=float(np.mean(aucs)) if aucs else None,
        ece=float(ece),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        per_class=tuple(per_class),
    )


def save_metrics(metrics: ClassificationMetrics, folder: Path) -> Path:
    """Write ``metrics.json`` into ``folder`` (created if needed), beside the model it describes.

    Returns:
        The path written.

    Examples:
        >>> import tempfile
        >>> m = classification_report(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ["bg", "cell"])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     load_metrics(save_metrics(m, Path(tmp))) == m
        True
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / METRICS_NAME
    path.write_text(json.dumps(metrics.to_dict(), indent=2, allow_nan=False) + "\n")
    return path


def load_metrics(path: Path) -> ClassificationMetrics:
    """Read a ``metrics.json`` written by :func:`save_metrics` (a folder means the file inside it)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    return ClassificationMetrics.from_dict(json.loads(path.read_text()))
