"""Stage 1 on real CRIC fields, grouped k-fold cross-validation: recall of annotated nuclei against detections.

    python benchmarks/real_cv_stage1.py ../shared/data --folds 5

Each outer fold holds out whole fields; DB_3 is cut from the other fields only (an inner split by field gives the
trainer its validation patches), stage 1 is trained on it and run on the held-out fields at a low threshold.
Raising the threshold afterwards gives exactly what detecting at that threshold gives (suppression keeps the
more confident of two close points), so one pass yields the whole recall-against-detections curve. Printed per
threshold: mean detections per field and recall within ``--radius`` px overall and by Bethesda label, each with
its 95% interval over folds; the operating point is the lowest threshold whose detections per field stay within
``--budget``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from papscreen.datasets.build import plan_build
from papscreen.datasets.real import read_real_cells
from papscreen.imaging.image_io import read_rgb
from papscreen.models.crossval import mean_ci
from papscreen.models.device import describe_machine, resolve_device
from papscreen.models.evaluation import detection_recall
from papscreen.models.real_cv import (
    LABEL_GROUPS,
    Stage1Recipe,
    default_build_options,
    fold_fields,
    prepare,
    train_detector,
)

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/papscreen-real-cv"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, default=None)
    parser.add_argument("--arch", default="cnn20plus")
    parser.add_argument("--scale", type=float, default=1 / 3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--hard-background", type=float, default=0.0)
    parser.add_argument("--abnormal-repeat", type=int, default=1)
    parser.add_argument("--min-distance", type=float, default=16.0)
    parser.add_argument("--proposals", action="store_true")
    parser.add_argument("--proposals-first", action="store_true")
    parser.add_argument("--snap", type=float, default=0.0, help="snap radius, field px")
    parser.add_argument("--radius", type=float, default=15.0)
    parser.add_argument("--budget", type=float, default=250.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    device = resolve_device("auto")
    print(f"machine: {describe_machine(device)}", flush=True)
    cells = read_real_cells(args.data_dir)
    by_field = cells.points_by_field()
    plan = plan_build(args.data_dir / "cric-dev", default_build_options(args.seed))
    data = prepare(cells, plan, [], args.folds, args.seed)  # the same folds as real_accuracy.py
    recipe = Stage1Recipe(
        architecture=args.arch,
        working_scale=args.scale,
        epochs=args.epochs,
        patience=args.patience,
        abnormal_repeat=args.abnormal_repeat,
        hard_background=args.hard_background,
        threshold=min(THRESHOLDS),
        min_distance_px=args.min_distance,
        use_proposals=args.proposals or args.proposals_first,
        proposals_first=args.proposals_first,
        snap_radius_px=args.snap,
    )
    per_fold: list[dict[float, dict[str, tuple[int, int]]]] = []
    detections: list[dict[float, float]] = []
    started = time.perf_counter()
    for fold in data.folds[: args.only_folds or len(data.folds)]:
        train_fields, val_fields, test_fields = fold_fields(data, fold)
        tick = time.perf_counter()
        out = args.work / f"stage1-fold{fold.number}"
        detector = train_detector(plan, train_fields, val_fields, recipe, out, device).detector
        train_seconds = time.perf_counter() - tick
        found: dict[float, dict[str, tuple[int, int]]] = {t: {} for t in THRESHOLDS}
        counts: dict[float, list[int]] = {t: [] for t in THRESHOLDS}
        seconds = 0.0
        for field in test_fields:
            rgb = read_rgb(cells.fields[field])
            tick = time.perf_counter()
            hits = detector.detect(rgb)
            seconds += time.perf_counter() - tick
            for t in THRESHOLDS:
                xy = hits.xy[hits.scores >= t]
                counts[t].append(len(xy))
                for name, labels in LABEL_GROUPS.items():
                    truth = np.array([[c.x, c.y] for c in by_field[field] if c.label in labels]).reshape(-1, 2)
                    match = detection_recall(xy, truth, args.radius)
                    old = found[t].get(name, (0, 0))
                    found[t][name] = (old[0] + match.found, old[1] + match.points)
        per_fold.append(found)
        detections.append({t: float(np.mean(counts[t])) for t in THRESHOLDS})
        at = {t: found[t]["all"][0] / max(found[t]["all"][1], 1) for t in THRESHOLDS}
        print(
            f"fold {fold.number}: trained {train_seconds:.0f} s, {seconds / len(test_fields):.2f} s/field; "
            + ", ".join(f"t={t}: {detections[-1][t]:.0f}/field recall {at[t]:.3f}" for t in THRESHOLDS),
            flush=True,
        )
    table = {}
    for t in THRESHOLDS:
        row = {"detections_per_field": mean_ci([d[t] for d in detections]).to_dict()}
        for name in LABEL_GROUPS:
            row[f"recall_{name}"] = mean_ci(
                [f[t][name][0] / f[t][name][1] for f in per_fold if f[t][name][1]]
            ).to_dict()
        table[str(t)] = row
        print(
            f"t={t}: det/field {mean_ci([d[t] for d in detections])}; "
            + "; ".join(
                f"{name} {mean_ci([f[t][name][0] / f[t][name][1] for f in per_fold if f[t][name][1]])}"
                for name in LABEL_GROUPS
            )
        )
    within = [t for t in THRESHOLDS if table[str(t)]["detections_per_field"]["mean"] <= args.budget]
    chosen = min(within) if within else max(THRESHOLDS)
    print(f"\noperating point within {args.budget:g} detections per field: threshold {chosen}")
    print(f"total {time.perf_counter() - started:.0f} s")
    path = args.work / "results" / f"stage1-{args.name or args.arch}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "table": table, "chosen_threshold": chosen}
    path.write_text(json.dumps(record | {"machine": describe_machine(device)}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
