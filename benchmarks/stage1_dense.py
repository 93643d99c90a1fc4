"""Stage 1, dense map versus the original's per-window classification, on one synthetic 2048x1536 field.

The original cut every 20x20 window of the field (at the working scale, on the detector's grid) and classified the
windows in batches. :meth:`Stage1Detector.probability_map` runs the same network once over the whole field. This
script times both with the same weights on the same machine, checks that they give the same probabilities and
prints the speed ratio (target: at least 50x).

When classifying every window would take more than ``--max-baseline-s`` seconds, the baseline classifies a random
sample of windows and its time is extrapolated per window to the whole field; the output says so.

Usage:
    .venv/bin/python benchmarks/stage1_dense.py [--architecture cnn20|cnn20plus] [--stride 1|2] [--sample 20000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from papscreen.datasets.synthetic import render_field
from papscreen.models.device import describe_machine
from papscreen.models.stage1 import Stage1Config, Stage1Detector
from papscreen.models.stage1_net import INPUT_PX, build_stage1_network

TOLERANCE = 1e-5
TARGET_RATIO = 50.0


def best_time(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` runs, seconds (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def classify_windows(detector: Stage1Detector, work: np.ndarray, corners: np.ndarray, batch_size: int) -> np.ndarray:
    """The original's way: cut each window, stack a batch, classify it; returns the cell probabilities."""
    out = np.empty(len(corners), np.float32)
    for first in range(0, len(corners), batch_size):
        chunk = corners[first : first + batch_size]
        patches = np.stack([work[r : r + INPUT_PX, c : c + INPUT_PX] for r, c in chunk])
        logits = detector.patch_logits(patches)
        out[first : first + len(chunk)] = 1.0 / (1.0 + np.exp(-(logits[:, 1] - logits[:, 0])))
    return out


def main() -> None:
    """Time both ways, compare them and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="cnn20", choices=["cnn20", "cnn20plus"])
    parser.add_argument("--stride", type=int, default=2, choices=[1, 2], help="map stride, working pixels")
    parser.add_argument("--batch-size", type=int, default=256, help="windows per batch in the baseline")
    parser.add_argument("--sample", type=int, default=20000, help="windows the baseline classifies if sampled")
    parser.add_argument("--max-baseline-s", type=float, default=120.0, help="above this, sample the baseline")
    parser.add_argument("--repeats", type=int, default=3, help="dense runs; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"machine: {describe_machine()}")
    rng = np.random.default_rng(args.seed)
    field = render_field(rng, {"NILM": 30, "HSIL": 3}).rgb
    torch.manual_seed(args.seed)
    network = build_stage1_network(args.architecture).eval()
    detector = Stage1Detector(network, Stage1Config(map_stride=args.stride))  # type: ignore[arg-type]
    scale = detector.config.working_scale
    print(
        f"field {field.shape[1]}x{field.shape[0]}, {args.architecture} (random weights), working scale {scale:g}, "
        f"map stride {args.stride}"
    )

    detector.probability_map(field)  # warm-up
    dense_s = best_time(lambda: detector.probability_map(field), args.repeats)
    dense = detector.probability_map(field).probabilities

    # The baseline sees exactly what the dense pass sees: the working image, mirrored by half a window.
    pad = INPUT_PX // 2
    work = cv2.copyMakeBorder(detector.working_image(field), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    rows, cols = dense.shape
    grid = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), axis=-1).reshape(-1, 2)
    total = len(grid)
    probe = grid[rng.choice(total, size=min(total, 2 * args.batch_size), replace=False)]
    per_window = best_time(lambda: classify_windows(detector, work, probe * args.stride, args.batch_size), 1)
    per_window /= len(probe)
    sampled = per_window * total > args.max_baseline_s
    chosen = grid[rng.choice(total, size=min(total, args.sample), replace=False)] if sampled else grid
    start = time.perf_counter()
    baseline = classify_windows(detector, work, chosen * args.stride, args.batch_size)
    baseline_s = (time.perf_counter() - start) / len(chosen) * total

    difference = float(np.max(np.abs(baseline - dense[chosen[:, 0], chosen[:, 1]])))
    ratio = baseline_s / dense_s
    how = f"{len(chosen)} sampled windows, extrapolated to all {total}" if sampled else f"all {total} windows, measured"
    print(f"dense map (Stage1Detector.probability_map): {dense_s:.3f} s for {total} windows")
    print(f"per-window baseline (cut, batches of {args.batch_size}): {baseline_s:.2f} s ({how})")
    print(f"max |probability difference|: {difference:.2e} (tolerance {TOLERANCE:g})")
    print(f"speed-up: {ratio:.1f}x (target >= {TARGET_RATIO:g}x): {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    if difference >= TOLERANCE:
        raise SystemExit(f"dense and per-window probabilities differ by {difference:.2e}")


if __name__ == "__main__":
    main()
