"""Writing a cross-validation run: JSON of every number, a markdown table people read, and the figures.

Files, in one folder: ``results.json`` (recipes, machine, per-fold figures, means with 95% intervals),
``report.md`` (the table), ``confusion_stage2.png`` and ``confusion_e2e.png`` (pooled over folds),
``roc.png`` (one class against the rest, stage 2), ``roc_lsil_plus.png`` (LSIL or worse against NILM, cells and
fields), ``calibration.png`` and ``recall_vs_detections.png`` (stage 1).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.models.metrics import classification_report
from papscreen.models.plots import plot_confusion_matrix, plot_reliability_diagram, plot_roc_curves
from papscreen.models.real_cv import FoldResult

__all__ = ["REPORT_ROWS", "markdown_table", "write_report"]

REPORT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("stage 1", "recall, all annotated nuclei", "stage1_recall_all"),
    ("stage 1", "recall, NILM", "stage1_recall_NILM"),
    ("stage 1", "recall, LSIL (with ASC-US)", "stage1_recall_LSIL"),
    ("stage 1", "recall, HSIL (with ASC-H)", "stage1_recall_HSIL"),
    ("stage 1", "recall, SCC", "stage1_recall_SCC"),
    ("stage 1", "detections per field", "stage1_detections_per_field"),
    ("stage 2", "accuracy", "stage2_accuracy"),
    ("stage 2", "macro-F1", "stage2_macro_f1"),
    ("stage 2", "sensitivity NILM", "stage2_sensitivity_NILM"),
    ("stage 2", "sensitivity LSIL", "stage2_sensitivity_LSIL"),
    ("stage 2", "sensitivity HSIL", "stage2_sensitivity_HSIL"),
    ("stage 2", "sensitivity SCC", "stage2_sensitivity_SCC"),
    ("stage 2", "specificity NILM", "stage2_specificity_NILM"),
    ("stage 2", "specificity LSIL", "stage2_specificity_LSIL"),
    ("stage 2", "specificity HSIL", "stage2_specificity_HSIL"),
    ("stage 2", "specificity SCC", "stage2_specificity_SCC"),
    ("stage 2", "LSIL+ vs NILM AUC", "stage2_lsil_plus_auc"),
    ("stage 2", "ECE", "stage2_ece"),
    ("six labels", "ASC-US called LSIL or worse", "six_ASC-US_called_lsil_plus"),
    ("six labels", "ASC-H called HSIL or worse", "six_ASC-H_called_hsil_plus"),
    ("six labels", "NILM called LSIL or worse", "six_NILM_called_lsil_plus"),
    ("end to end", "accuracy", "e2e_accuracy"),
    ("end to end", "macro-F1", "e2e_macro_f1"),
    ("end to end", "LSIL+ vs NILM AUC", "e2e_lsil_plus_auc"),
    ("end to end", "detections called LSIL or worse", "detections_called_lsil_plus"),
    ("end to end", "of them, far from every annotated nucleus", "unannotated_detections_called_lsil_plus"),
    ("end to end", "detections of normal fields called LSIL or worse", "normal_field_detections_called_lsil_plus"),
    ("field", "LSIL+ sensitivity", "field_sensitivity"),
    ("field", "specificity", "field_specificity"),
    ("field", "AUC", "field_auc"),
    ("field", "threshold (chosen on inner validation)", "field_threshold"),
)


def _cell(value: Mapping[str, Any] | None) -> str:
    if not value or value.get("n", 0) == 0:
        return "n/a"
    mean, low, high = value["mean"], value["low"], value["high"]
    if abs(mean) >= 10:
        return f"{mean:.0f} [{low:.0f}, {high:.0f}]"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def markdown_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The summary as a markdown table: part, figure, mean [95% interval over folds].

    Examples:
        >>> print(markdown_table({"stage2_accuracy": {"mean": 0.8, "low": 0.7, "high": 0.9, "n": 5}}).splitlines()[2])
        | stage 2 | accuracy | 0.800 [0.700, 0.900] |
    """
    lines = ["| part | figure | mean [95% CI] |", "|---|---|---|"]
    for part, name, key in REPORT_ROWS:
        if key in summary:
            lines.append(f"| {part} | {name} | {_cell(summary[key])} |")
    return "\n".join(lines)


def _lsil_plus_roc(results: Sequence[FoldResult], path: Path) -> Path:
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    truth = np.concatenate([r.cell_truth for r in results]) > 0
    probs = np.concatenate([r.cell_probs for r in results])
    fpr, tpr, _ = roc_curve(truth, 1 - probs[:, 0])
    ax.plot(fpr, tpr, label="cells (stage 2 on annotated nuclei)")
    field_truth = np.concatenate([r.field_truth for r in results])
    if 0 < field_truth.sum() < len(field_truth):
        fpr, tpr, _ = roc_curve(field_truth, np.concatenate([r.field_score for r in results]))
        ax.plot(fpr, tpr, label="fields (top-k score over all detections)")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("LSIL or worse against NILM, pooled over folds")
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def _recall_plot(results: Sequence[FoldResult], path: Path) -> Path:
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    for r in results:
        curve = r.recall_curve
        ax.plot(curve["detections_per_field"], curve["recall"], marker="o", label=f"fold {r.number}")
    ax.set_xlabel("detections per field")
    ax.set_ylabel("recall of annotated nuclei")
    ax.set_title("Stage 1: recall against detections (thresholds 0.5-0.99)")
    ax.legend(loc="lower right")
    figure.savefig(path, format="png", dpi=100)
    return path


def write_report(
    out_dir: Path,
    results: Sequence[FoldResult],
    summary: Mapping[str, Mapping[str, Any]],
    recipes: Mapping[str, Any],
    machine: str,
    seconds: float,
) -> dict[str, Path]:
    """Write the JSON, the markdown table and the figures; return the paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = np.concatenate([r.cell_truth for r in results])
    probs = np.concatenate([r.cell_probs for r in results])
    e2e = np.concatenate([r.e2e_probs for r in results])
    record = {
        "machine": machine,
        "seconds": round(seconds, 1),
        "recipes": {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in recipes.items()},
        "summary": summary,
        "folds": [
            {"number": r.number, "figures": r.figures, "seconds": r.seconds, "recall_curve": r.recall_curve}
            for r in results
        ],
        "pooled_confusion_stage2": classification_report(truth, probs, BETHESDA_CLASSES).confusion,
        "pooled_confusion_e2e": classification_report(truth, e2e, BETHESDA_CLASSES).confusion,
    }
    written = {"results.json": out_dir / "results.json", "report.md": out_dir / "report.md"}
    written["results.json"].write_text(json.dumps(record, indent=1, default=str))
    heading = f"Cross-validation, {len(results)} folds, {seconds / 60:.0f} min on {machine}\n\n"
    written["report.md"].write_text(heading + markdown_table(summary) + "\n")
    written["confusion_stage2.png"] = plot_confusion_matrix(
        classification_report(truth, probs, BETHESDA_CLASSES), out_dir / "confusion_stage2.png"
    )
    written["confusion_e2e.png"] = plot_confusion_matrix(
        classification_report(truth, e2e, BETHESDA_CLASSES), out_dir / "confusion_e2e.png"
    )
    written["roc.png"] = plot_roc_curves(truth, probs, BETHESDA_CLASSES, out_dir / "roc.png")
    written["roc_lsil_plus.png"] = _lsil_plus_roc(results, out_dir / "roc_lsil_plus.png")
    written["calibration.png"] = plot_reliability_diagram(truth, probs, out_dir / "calibration.png")
    written["recall_vs_detections.png"] = _recall_plot(results, out_dir / "recall_vs_detections.png")
    return written
