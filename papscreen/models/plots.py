"""Evaluation and training figures written as PNG beside a model, for people reviewing it.

Figures are drawn on ``matplotlib.figure.Figure`` objects and saved directly (the Agg renderer), never
through ``pyplot``: no display is needed, no global figure state leaks between calls, and the service can
draw from any thread. File names are fixed so a model folder always looks the same:
``confusion_matrix.png``, ``roc.png``, ``calibration.png`` and ``training_curves.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from papscreen.models.metrics import ECE_BINS, ClassificationMetrics

__all__ = [
    "CALIBRATION_PNG",
    "CONFUSION_PNG",
    "ROC_PNG",
    "TRAINING_CURVES_PNG",
    "plot_confusion_matrix",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "plot_training_curves",
    "write_evaluation_plots",
]

CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc.png"
CALIBRATION_PNG = "calibration.png"
TRAINING_CURVES_PNG = "training_curves.png"

_DPI = 100


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=_DPI)
    return path


def plot_confusion_matrix(metrics: ClassificationMetrics, path: Path) -> Path:
    """Draw the confusion matrix (rows true, columns predicted), shaded by row share, annotated with counts.

    Shading by the share of each true class keeps a rare class (SCC) readable beside a common one (NILM).

    Examples:
        >>> import tempfile
        >>> from papscreen.models.metrics import classification_report
        >>> m = classification_report(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ["bg", "cell"])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     plot_confusion_matrix(m, Path(tmp) / CONFUSION_PNG).stat().st_size > 0
        True
    """
    counts = np.array(metrics.confusion, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    k = len(metrics.class_names)
    figure = Figure(figsize=(1.2 * k + 2.5, 1.2 * k + 2), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", color=colour)
    ax.set_xticks(range(k), metrics.class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), metrics.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {metrics.accuracy:.3f}, balanced {metrics.balanced_accuracy:.3f}")
    figure.colorbar(image, ax=ax, label="share of true class")
    return _save(figure, path)


def plot_roc_curves(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Draw one-versus-rest ROC curves; a class absent from (or alone in) ``y_true`` is left out.

    With two classes only the second (the positive class, e.g. *cell*) is drawn: the other curve carries
    the same information.
    """
    y = np.asarray(y_true)
    p = np.asarray(probs)
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    classes = [1] if len(class_names) == 2 else range(len(class_names))
    for c in classes:
        positive = y == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, c])
        ax.plot(fpr, tpr, label=class_names[c])
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title("ROC, one class versus the rest")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    return _save(figure, path)


def plot_reliability_diagram(y_true: np.ndarray, probs: np.ndarray, path: Path, *, n_bins: int = ECE_BINS) -> Path:
    """Draw top-label accuracy against confidence in equal-width bins (the bins of the reported ECE).

    Points below the diagonal are over-confident bins. Bar heights underneath show how many predictions
    fall in each bin, since an empty-looking bin with a wild point is usually a bin of two samples.
    """
    y = np.asarray(y_true)
    p = np.asarray(probs)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.int64)
    figure = Figure(figsize=(5.5, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    if np.unique(correct).size == 2:
        accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform")
    else:  # all right or all wrong: calibration_curve needs both outcomes, the answer is a constant
        accuracy, mean_confidence = np.array([correct.mean()]), np.array([confidence.mean()])
    top.plot(mean_confidence, accuracy, marker="o", label="model")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1.01)
    top.legend(loc="upper left")
    top.set_title("reliability (top label)")
    bottom.hist(confidence, bins=np.linspace(0, 1, n_bins + 1), color="grey")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    bottom.set_xlim(0, 1)
    return _save(figure, path)


def plot_training_curves(history: Sequence[Mapping[str, object]], path: Path) -> Path:
    """Draw per-epoch losses (left) and other numeric metrics (right) from a training history.

    ``history`` is one dict per epoch, e.g. ``{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6,
    "val_accuracy": 0.8}``; keys containing ``loss`` go left, every other numeric key except ``epoch`` goes
    right. The x axis is ``epoch`` when every entry has it, else 1, 2, ....

    Raises:
        ValueError: an empty history.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot")
    epochs = [entry["epoch"] for entry in history] if all("epoch" in e for e in history) else None
    x = np.asarray(epochs if epochs is not None else range(1, len(history) + 1), dtype=float)
    keys = [
        k
        for k in dict.fromkeys(key for entry in history for key in entry)
        if k != "epoch" and any(isinstance(e.get(k), int | float) and not isinstance(e.get(k), bool) for e in history)
    ]
    figure = Figure(figsize=(10, 4), layout="constrained")
    losses, others = figure.subplots(1, 2)
    for key in keys:
        values = np.array(
            [float(v) if isinstance(v := e.get(key), int | float) else np.nan for e in history], dtype=float
        )
        ax = losses if "loss" in key else others
        ax.plot(x, values, marker="o", markersize=3, label=key)
    for ax, title in ((losses, "loss"), (others, "metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return _save(figure, path)


def write_evaluation_plots(
    folder: Path,
    y_true: np.ndarray,
    probs: np.ndarray,
    metrics: ClassificationMetrics,
    *,
    history: Sequence[Mapping[str, object]] | None = None,
) -> dict[str, Path]:
    """Write every figure into ``folder`` under its fixed name; training curves only when a history is given.

    Returns:
        The paths written, keyed by file name.

    Examples:
        >>> import tempfile
        >>> from papscreen.models.metrics import classification_report
        >>> y, p = np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        >>> m = classification_report(y, p, ["bg", "cell"])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     sorted(write_evaluation_plots(Path(tmp), y, p, m, history=[{"epoch": 1, "train_loss": 0.5}]))
        ['calibration.png', 'confusion_matrix.png', 'roc.png', 'training_curves.png']
    """
    folder = Path(folder)
    written = {
        CONFUSION_PNG: plot_confusion_matrix(metrics, folder / CONFUSION_PNG),
        ROC_PNG: plot_roc_curves(y_true, probs, metrics.class_names, folder / ROC_PNG),
        CALIBRATION_PNG: plot_reliability_diagram(y_true, probs, folder / CALIBRATION_PNG),
    }
    if history:
        written[TRAINING_CURVES_PNG] = plot_training_curves(history, folder / TRAINING_CURVES_PNG)
    return written
