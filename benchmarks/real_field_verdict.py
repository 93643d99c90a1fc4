"""The field verdict on real CRIC fields, re-measured from the models a cross-validation run kept.

    python benchmarks/real_field_verdict.py ../shared/data --work /tmp/papscreen-real-cv --folds 5

``benchmarks/real_accuracy.py`` keeps each fold's two models under ``--work``. This script reloads them, analyses
each fold's inner validation fields and held-out fields once, and measures the field verdict for every top-k in
``--top-k`` (threshold chosen on the inner validation fields for ``--field-sensitivity``, then applied to the
held-out fields), and for k itself chosen on the inner validation fields. Prints held-out sensitivity,
specificity and AUC, mean and 95% interval over folds. No training: minutes, not hours.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from papscreen.datasets.build import plan_build
from papscreen.datasets.real import read_real_cells
from papscreen.imaging.image_io import read_rgb
from papscreen.models.crossval import mean_ci
from papscreen.models.device import describe_machine
from papscreen.models.field_score import field_scores
from papscreen.models.real_cv import (
    FieldRecipe,
    analyse_field,
    choose_scorer,
    default_build_options,
    fold_fields,
    prepare,
)
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/papscreen-real-cv"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-k", default="1,3,5,10,20,40", help="comma-separated k to try")
    parser.add_argument("--field-sensitivity", type=float, default=0.95)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    print(f"machine: {describe_machine()}", flush=True)
    choices = tuple(int(k) for k in args.top_k.split(","))
    cells = read_real_cells(args.data_dir)
    data = prepare(cells, plan_build(args.data_dir / "cric-dev", default_build_options(args.seed)), [], args.folds,
                   args.seed)  # fmt: skip
    by_field = cells.points_by_field()
    rows: dict[str, list[tuple[float, float, float | None]]] = {}
    for fold in data.folds:
        models = args.work / f"fold{fold.number}" / "models"
        if not (models / "stage2").is_dir():
            print(f"fold {fold.number}: no models under {models}; skipped")
            continue
        detector = Stage1Detector.from_checkpoint(models / "stage1")
        classifier = Stage2Classifier.from_checkpoint(models / "stage2")
        _, inner_fields, test_fields = fold_fields(data, fold)
        inner = {g: analyse_field(detector, classifier, read_rgb(cells.fields[g])) for g in inner_fields}
        test = {g: analyse_field(detector, classifier, read_rgb(cells.fields[g])) for g in test_fields}
        truth = np.array([any(c.label != "NILM" for c in by_field[g]) for g in test])
        suspicion = [1.0 - a.probs[:, 0] for a in test.values()]
        recipes = {f"top-{k}": FieldRecipe(top_k=k, min_sensitivity=args.field_sensitivity) for k in choices}
        recipes["k chosen on validation"] = FieldRecipe(min_sensitivity=args.field_sensitivity, top_k_choices=choices)
        for name, recipe in recipes.items():
            scorer, _ = choose_scorer(inner, cells, recipe)
            scores = field_scores(suspicion, scorer.top_k)
            flagged = scores >= scorer.threshold
            auc = float(roc_auc_score(truth, scores)) if 0 < truth.sum() < len(truth) else None
            rows.setdefault(name, []).append((flagged[truth].mean(), (~flagged[~truth]).mean(), auc))
        print(f"fold {fold.number}: {truth.sum()} abnormal and {(~truth).sum()} normal held-out fields", flush=True)
    print(f"\n{'verdict':<26} {'sensitivity':>24} {'specificity':>24} {'AUC':>24}")
    for name, values in rows.items():
        sens, spec, auc = (mean_ci([v[i] for v in values]) for i in range(3))
        print(f"{name:<26} {sens!s:>24} {spec!s:>24} {auc!s:>24}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
