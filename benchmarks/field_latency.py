"""Latency of one 2048x1536 field through the slide engine, and stage 2 batched against the original's loop.

    .venv/bin/python benchmarks/field_latency.py                         # CPU, 3 repeats
    .venv/bin/python benchmarks/field_latency.py --device cuda           # also sweeps stage-2 batch sizes
    .venv/bin/python benchmarks/field_latency.py --batch-sizes 8,32,64 --sweep-crops 128   # a CPU sweep

A synthetic field (:func:`~papscreen.datasets.synthetic.render_field`: 40 NILM, 4 LSIL, 4 HSIL, 2 SCC and the
usual clutter) goes through :func:`~papscreen.pipeline.analyze` once to warm up, then ``--repeats`` times from
memory (:class:`~papscreen.imaging.slides.ArraySlideReader`) and as many times from a PNG file on disk
(:func:`~papscreen.imaging.slides.open_slide`, so decoding is real). The script prints the median seconds per
field, cells per second, and the engine's own breakdown: read (reader-thread busy time), stage 1, stage 2, and
the rest (thumbnail, seam merging, grading, overlay and gallery).

Baseline, in the same run on the same crops: the original's stage 2, one crop per forward pass at fp32
(``stage2.with_precision("fp32").predict_proba(crop[None])`` in a loop), against the engine's batched stage 2 at
its precision and batch size (and batched fp32, when the engine's precision is another, to separate the two
gains). The ratio is printed.

On a GPU (``--device cuda``, or ``auto`` where CUDA is present) the script also sweeps stage-2 batch sizes
(``--batch-sizes``, default 32..512) over ``--sweep-crops`` crops cut at random places of the field, timing
``predict_proba(crops, batch_size=b)`` (after a warm-up, with ``torch.cuda.synchronize``), and prints the
throughput and the peak GPU memory of each, and the largest batch worth using: the smallest one within 5% of the
best throughput (larger batches only cost memory). On a CPU the sweep runs only when ``--batch-sizes`` is given.

Models: ``--stage1``/``--stage2`` folders when given; otherwise a stage 1 trained in a minute on a small synthetic
DB_3 and the default stage 2 (ResNet50, input 160 px from a 250 px crop) with random weights: speed does not
depend on the weights' values (``benchmarks/_bench_models.py``). Torch keeps its default number of threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _bench_models import bench_models

from papscreen.config import BatchSettings, Settings
from papscreen.datasets.synthetic import render_field
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.image_io import write_rgb
from papscreen.imaging.slides import ArraySlideReader, SlideReader, open_slide
from papscreen.models.device import describe_machine, resolve_device
from papscreen.models.stage2 import Stage2Classifier
from papscreen.pipeline import ModelPair, SlideResult, analyze

COMPOSITION = {"NILM": 40, "LSIL": 4, "HSIL": 4, "SCC": 2}
GPU_BATCH_SIZES = "32,64,128,256,512"
BUSY_FRACTION = 0.95


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed analyses per source (the median counts)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", help="stage-2 precision: auto, fp32, bf16 or int8")
    parser.add_argument(
        "--batch-size", type=int, help="stage-2 crops per forward pass (default: the setting: 32 CPU, 256 GPU)"
    )
    parser.add_argument(
        "--batch-sizes", help=f"stage-2 batch sizes to sweep (default on a GPU: {GPU_BATCH_SIZES}; on a CPU: none)"
    )
    parser.add_argument("--sweep-crops", type=int, default=0, help="crops per sweep pass (0: 2048 on GPU, 128 CPU)")
    parser.add_argument("--sweep-repeats", type=int, default=2, help="timed passes per batch size (the best counts)")
    parser.add_argument("--stage1", type=Path, help="a saved stage-1 model folder (default: train a quick one)")
    parser.add_argument("--stage2", type=Path, help="a saved stage-2 model folder (default: random ResNet50)")
    parser.add_argument("--workdir", type=Path, help="folder for the PNG and built models (default: temporary)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    """Wait for the GPU, so a timer stops when the work is done (a no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_analyses(
    open_reader: Callable[[], SlideReader], models: ModelPair, settings: Settings, repeats: int
) -> tuple[list[dict[str, float]], SlideResult | None]:
    """``repeats`` analyses, each of a fresh reader; per run the wall seconds (opening included) and the timings."""
    runs = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        with open_reader() as slide:
            result = analyze(slide, models, settings)
        synchronize(models.device)
        wall = time.perf_counter() - start
        runs.append({**result.summary.timings, "wall": wall, "cells": float(result.summary.cell_count)})
    return runs, result


def report(source: str, runs: list[dict[str, float]]) -> None:
    """Medians of the runs: seconds per field, cells per second, and the breakdown."""
    med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    other = med["total"] - med["read"] - med["stage1"] - med["stage2"]
    print(
        f"{source:<22} {med['wall']:6.2f} s/field (median of {len(runs)}), {med['cells']:.0f} cells, "
        f"{med['cells'] / med['wall']:6.1f} cells/s | read {med['read']:.2f} s, stage 1 {med['stage1']:.2f} s, "
        f"stage 2 {med['stage2']:.2f} s, other {max(0.0, other):.2f} s"
    )


def best_rate(run: Callable[[], object], n: int, device: torch.device, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` calls of ``run`` (GPU work waited for)."""
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return n / best


def one_at_a_time(classifier: Stage2Classifier, crops: np.ndarray) -> np.ndarray:
    """The original's stage 2: one crop per forward pass."""
    return np.concatenate([classifier.predict_proba(crop[None]) for crop in crops])


def stage2_baseline(models: ModelPair, crops: np.ndarray, batch_size: int) -> None:
    """The original's loop (fp32, batch 1) against the engine's batched stage 2 on the same crops."""
    fp32 = models.stage2.with_precision("fp32")
    device = models.device
    one_at_a_time(fp32, crops[:2])  # warm-up
    base = best_rate(lambda: one_at_a_time(fp32, crops), len(crops), device, 1)
    print(f"\nstage 2 on the field's {len(crops)} crops, {device}:")
    print(f"  baseline one crop per forward pass, fp32:  {base:8.1f} crops/s  (1.00x)")
    candidates = [("fp32", fp32)]
    if models.stage2.precision != "fp32":
        candidates.append((models.stage2.precision, models.stage2))
    for name, classifier in candidates:
        classifier.predict_proba(crops, batch_size=batch_size)  # warm-up
        rate = best_rate(lambda c=classifier: c.predict_proba(crops, batch_size=batch_size), len(crops), device, 2)
        label = f"batched ({batch_size}), {name}:"
        engine = " (the engine's)" if classifier is models.stage2 else ""
        print(f"  {label:<41} {rate:8.1f} crops/s  ({rate / base:.2f}x){engine}")


def sweep(models: ModelPair, crops: np.ndarray, batch_sizes: list[int], repeats: int) -> None:
    """Throughput and peak GPU memory per stage-2 batch size; the smallest within 5% of the best."""
    device = models.device
    stage2 = models.stage2
    print(f"\nstage-2 batch-size sweep: {len(crops)} crops, {stage2.architecture} at {stage2.precision}, {device}")
    rates = {}
    for b in batch_sizes:
        stage2.predict_proba(crops[: 2 * b], batch_size=b)  # warm-up (and cuDNN's choice of kernels)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        rates[b] = best_rate(lambda b=b: stage2.predict_proba(crops, batch_size=b), len(crops), device, repeats)
        memory = (
            f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
            if device.type == "cuda"
            else ""
        )
        print(f"  batch {b:5d}: {rates[b]:9.1f} crops/s{memory}")
    best = max(rates.values())
    busy = min(b for b, r in rates.items() if r >= BUSY_FRACTION * best)
    print(
        f"  best {best:.1f} crops/s (batch {max(rates, key=rates.__getitem__)}); the largest batch that keeps it "
        f"busy: {busy} (the smallest within {1 - BUSY_FRACTION:.0%} of the best; settings.batch.stage2_inference_gpu)"
    )


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Render, analyse, compare, sweep."""
    print(f"machine: {describe_machine(resolve_device(args.device))}")
    models = bench_models(args.stage1, args.stage2, args.device, args.precision, workdir)
    device = models.device
    field = render_field(np.random.default_rng(args.seed), COMPOSITION)
    rgb = field.rgb
    png = workdir / "field.png"
    write_rgb(png, rgb)
    print(
        f"field {rgb.shape[1]}x{rgb.shape[0]}, {len(field.cells)} squamous cells "
        f"({', '.join(f'{k} {v}' for k, v in COMPOSITION.items())}); PNG {png.stat().st_size / 10**6:.1f} MB"
    )
    args.batch_size = args.batch_size or BatchSettings().stage2_for(device.type)
    settings = Settings(
        home=workdir / "home",
        device="cuda" if device.type == "cuda" else "cpu",
        analysis={"precision": args.precision},
        batch={"stage2_inference": args.batch_size, "stage2_inference_gpu": args.batch_size},
    )
    analyze(ArraySlideReader(rgb), models, settings)  # warm-up
    print(f"\nanalyze(), stage-2 batch {args.batch_size}, precision {models.stage2.precision}, {device}:")
    memory_runs, result = timed_analyses(lambda: ArraySlideReader(rgb), models, settings, args.repeats)
    report("from memory (array)", memory_runs)
    png_runs, _ = timed_analyses(lambda: open_slide(png), models, settings, args.repeats)
    report("from a PNG on disk", png_runs)

    crops = cut_crops(rgb, result.cells.xy, models.stage2.crop_size) if result else np.zeros((0,))
    if len(crops) == 0:
        print("stage 1 found no cells; no stage-2 comparison")
        return
    stage2_baseline(models, crops, args.batch_size)

    sizes = args.batch_sizes or (GPU_BATCH_SIZES if device.type == "cuda" else None)
    if sizes:
        n = args.sweep_crops or (2048 if device.type == "cuda" else 128)
        rng = np.random.default_rng(args.seed + 1)
        height, width = rgb.shape[:2]
        xy = np.column_stack([rng.uniform(0, width, n), rng.uniform(0, height, n)])
        sweep(
            models, cut_crops(rgb, xy, models.stage2.crop_size), [int(s) for s in sizes.split(",")], args.sweep_repeats
        )


def main() -> None:
    """Run in ``--workdir`` or a temporary folder."""
    args = parse_args()
    start = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="papscreen-field-latency-") as tmp:
            run(args, Path(tmp))
    print(f"\ntotal time: {time.perf_counter() - start:.0f} s; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
