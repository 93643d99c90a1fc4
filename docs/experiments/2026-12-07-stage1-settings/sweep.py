"""One-off experiment (issue 15): stage-1 detector settings on kept CV fold models, without retraining.

The detector's settings (snap, merge distance, colour proposals) live on its card, not in its weights, so they can
be changed on a trained network. For each fold a ``benchmarks/real_accuracy.py`` run kept
(``WORK/foldN/models/stage1``), every setting below detects nuclei in the fold's held-out fields; recall within
15 px by label group and detections per field are printed per setting, pooled over the folds.

    python docs/experiments/2026-12-07-stage1-settings/sweep.py ../shared/data --work /tmp/run5/work
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from papscreen.datasets.real import read_real_cells
from papscreen.imaging.image_io import read_rgb
from papscreen.models.evaluation import detection_recall
from papscreen.models.real_cv import LABEL_GROUPS, field_folds
from papscreen.models.stage1 import Stage1Detector

HERE = Path(__file__).resolve().parent


def settings_grid(base: Any) -> dict[str, dict[str, Any]]:
    """Named changes to the recipe's detector settings."""
    proposals = base.proposals

    def prop(**changes: Any) -> Any:
        return dataclasses.replace(proposals, **changes)

    return {
        "recipe": {},
        "proposal diameter >= 10": {"proposals": prop(min_diameter_px=10.0)},
        "proposal diameter >= 8": {"proposals": prop(min_diameter_px=8.0)},
        "proposal score >= 0.9": {"proposal_min_score": 0.9},
        "proposal score >= 0.5": {"proposal_min_score": 0.5},
        "haematoxylin >= 0.25": {"proposals": prop(haematoxylin_min=0.25)},
        "min distance 8": {"min_distance_px": 8.0},
        "min distance 12": {"min_distance_px": 12.0},
        "proposals first, min distance 14": {"proposals_first": True, "min_distance_px": 14.0},
        "proposals first, min distance 14, diameter >= 14": {
            "proposals_first": True,
            "min_distance_px": 14.0,
            "proposals": prop(min_diameter_px=14.0),
        },
        "snap sigma 8": {"snap_sigma_px": 8.0},
    }


def main() -> None:
    """Detect the held-out fields of each kept fold with every setting."""
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "sweep.json")
    args = parser.parse_args()
    cells = read_real_cells(args.data_dir)
    groups = np.array(sorted({c.group for c in cells.cells}))
    by_field = cells.points_by_field()
    totals: dict[str, dict[str, list[int]]] = {}
    for fold in field_folds(cells, args.folds, 0):
        folder = args.work / f"fold{fold.number}" / "models" / "stage1"
        if not folder.is_dir():
            continue
        detector = Stage1Detector.from_checkpoint(folder)
        held = [g for g in groups[fold.validation] if g in cells.fields]
        images = {g: read_rgb(cells.fields[g]) for g in held}
        for name, changes in settings_grid(detector.config).items():
            tuned = detector.with_config(**changes)
            row = totals.setdefault(name, {"fields": [0], "detections": [0], "seconds": [0]})
            tick = time.perf_counter()
            for g in held:
                xy = tuned.detect(images[g]).xy
                row["fields"][0] += 1
                row["detections"][0] += len(xy)
                for group_name, labels in LABEL_GROUPS.items():
                    truth = np.array([(c.x, c.y) for c in by_field[g] if c.label in labels], np.float64).reshape(-1, 2)
                    match = detection_recall(xy, truth, 15.0)
                    found, points = row.setdefault(group_name, [0, 0])
                    row[group_name] = [found + match.found, points + match.points]
            row["seconds"][0] += time.perf_counter() - tick
            print(f"fold {fold.number} {name}: {row['detections'][0] / row['fields'][0]:.0f} detections a field")
    report = {}
    print(f"{'setting':52s} det/field  all    NILM   LSIL   HSIL   SCC    s/field")
    for name, row in totals.items():
        recall = {g: row[g][0] / max(row[g][1], 1) for g in LABEL_GROUPS}
        per_field = row["detections"][0] / row["fields"][0]
        report[name] = {"detections_per_field": per_field, "recall": recall, "fields": row["fields"][0]}
        print(
            f"{name:52s} {per_field:8.0f}  "
            + " ".join(f"{recall[g]:.3f}" for g in LABEL_GROUPS)
            + f"  {row['seconds'][0] / row['fields'][0]:.2f}"
        )
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
