"""One-off experiment (issue 15): stage 2's CNN beside the morphometry grader, on the held-out nuclei of CV folds.

For each fold whose models a ``benchmarks/real_accuracy.py`` run kept (``WORK/foldN/models/stage2``), the CNN
grades the fold's held-out annotated nuclei; the morphometry grader (``morphometry_cv.py``'s features, a
logistic regression or gradient boosting fitted on the fold's training fields only) grades the same nuclei; the
two are fused by the geometric mean of their probabilities (no weight tuned on the held-out cells).

    python docs/experiments/2026-12-07-morph/fusion_cv.py ../shared/data --work /tmp/run5/work --folds 5
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.real import read_real_cells
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.image_io import read_rgb
from papscreen.models.metrics import classification_report
from papscreen.models.real_cv import field_folds
from papscreen.models.stage2 import Stage2Classifier

warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent


def figures(truth: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The stage-2 figures of the ledger."""
    report = classification_report(truth, probs, BETHESDA_CLASSES)
    return {
        "accuracy": report.accuracy,
        "macro_f1": float(f1_score(truth, probs.argmax(1), average="macro")),
        "lsil_plus_auc": float(roc_auc_score(truth > 0, 1 - probs[:, 0])),
        "ece": report.ece,
        **{f"sens_{c.name}": c.sensitivity for c in report.per_class},
    }


def fuse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised geometric mean of two probability tables."""
    log = 0.5 * (np.log(np.clip(a, 1e-6, 1)) + np.log(np.clip(b, 1e-6, 1)))
    out = np.exp(log - log.max(1, keepdims=True))
    return out / out.sum(1, keepdims=True)


def main() -> None:
    """Grade each kept fold's held-out nuclei three ways."""
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "fusion.json")
    args = parser.parse_args()
    saved = np.load(HERE / "features.npz")
    x, y, g = saved["features"], saved["truth"], saved["groups"]
    cells = read_real_cells(args.data_dir)
    folds = field_folds(cells, args.folds, 0)
    groups = np.array(sorted({c.group for c in cells.cells}))
    field_cells = [c for c in cells.cells if c.from_field]
    results = {}
    for fold in folds:
        model_dir = args.work / f"fold{fold.number}" / "models" / "stage2"
        if not model_dir.is_dir():
            continue
        held = set(groups[fold.validation])
        test = np.array([grp in held for grp in g])
        cnn = Stage2Classifier.from_checkpoint(model_dir)
        probs_cnn = np.zeros((test.sum(), 4), np.float32)
        order = np.flatnonzero(test)
        by_field: dict[str, list[int]] = {}
        for row, i in enumerate(order):
            by_field.setdefault(field_cells[i].group, []).append(row)
        for grp, rows in by_field.items():
            rgb = read_rgb(cells.fields[grp])
            xy = np.array([(field_cells[order[r]].x, field_cells[order[r]].y) for r in rows])
            probs_cnn[rows] = cnn.predict_proba(cut_crops(rgb, xy, cnn.crop_size), batch_size=128)
        lr = make_pipeline(
            QuantileTransformer(n_quantiles=200, output_distribution="normal"),
            LogisticRegression(C=0.3, class_weight="balanced", max_iter=2000),
        ).fit(x[~test], y[~test])
        gbm = HistGradientBoostingClassifier(
            max_iter=300,
            learning_rate=0.05,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            class_weight="balanced",
            random_state=0,
        ).fit(x[~test], y[~test])
        probs_lr, probs_gbm = lr.predict_proba(x[test]), gbm.predict_proba(x[test])
        rows = {
            "cnn": figures(y[test], probs_cnn),
            "morph_lr": figures(y[test], probs_lr),
            "morph_gbm": figures(y[test], probs_gbm),
            "cnn+lr": figures(y[test], fuse(probs_cnn, probs_lr)),
            "cnn+gbm": figures(y[test], fuse(probs_cnn, probs_gbm)),
        }
        results[fold.number] = rows
        print(f"fold {fold.number} ({test.sum()} nuclei)")
        for name, row in rows.items():
            print(f"  {name:10s}", " ".join(f"{k} {v:.3f}" for k, v in row.items()))
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
