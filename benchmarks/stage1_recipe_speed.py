"""Stage 1 on real fields: the real-data recipe's detector settings against today's, same model, same run.

    python benchmarks/stage1_recipe_speed.py MODEL ../shared/data --fields 30

MODEL is a saved stage-1 model (e.g. one that ``benchmarks/real_accuracy.py`` kept under its work folder). The
baseline is the same network without snapping or colour proposals (threshold 0.7, 16 px apart, the defaults); the
recipe is snapping 15 px (sigma 6), 10 px apart, colour proposals of 12 px and more at score 0.99. Each is timed
over the first ``--fields`` fields of ``cric-dev`` twice, alternating; prints seconds a field, detections a field
and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from papscreen.datasets.real import read_real_cells
from papscreen.imaging.image_io import read_rgb
from papscreen.models.device import describe_machine
from papscreen.models.proposals import ProposalConfig
from papscreen.models.stage1 import Stage1Detector


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--fields", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {describe_machine()}")
    cells = read_real_cells(args.data_dir)
    rgbs = [read_rgb(cells.fields[f]) for f in sorted(cells.fields)[: args.fields]]
    model = Stage1Detector.from_checkpoint(args.model)
    today = model.with_config(threshold=0.7, min_distance_px=16.0, snap_radius_px=0.0, use_proposals=False)
    recipe = model.with_config(
        threshold=0.5, min_distance_px=10.0, snap_radius_px=15.0, snap_sigma_px=6.0, use_proposals=True,
        proposal_min_score=0.99, proposals=ProposalConfig(min_diameter_px=12.0),
    )  # fmt: skip
    seconds = {"today": [], "recipe": []}
    counts = {"today": 0, "recipe": 0}
    for _ in range(2):
        for name, detector in (("today", today), ("recipe", recipe)):
            detector.detect(rgbs[0])
            tick = time.perf_counter()
            counts[name] = sum(len(detector.detect(rgb)) for rgb in rgbs)
            seconds[name].append((time.perf_counter() - tick) / len(rgbs))
    for name in seconds:
        print(f"{name:>6}: {min(seconds[name]):.3f} s a field, {counts[name] / len(rgbs):.0f} detections a field")
    print(f"recipe / today: {min(seconds['recipe']) / min(seconds['today']):.2f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
