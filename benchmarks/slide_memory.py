"""Peak memory and speed of one whole-slide analysis: a 40000x40000 pyramid, end to end, in bounded memory.

    .venv/bin/python benchmarks/slide_memory.py                      # 40000x40000, 6 tissue blocks, temp dir
    .venv/bin/python benchmarks/slide_memory.py --size 20000 --tissue-blocks 2 --out /data/bench --keep
    .venv/bin/python benchmarks/slide_memory.py --stage1 models/stage1 --stage2 models/stage2 --device cuda

The script writes a synthetic slide with :func:`~papscreen.datasets.synthetic.write_synthetic_slide`: a pyramidal
tiled TIFF (JPEG tiles of 512 px, levels 1, 4 and 16 as separate IFDs), written tile by tile, mostly empty glass
with square blocks of rendered cells (40 NILM each by default) and a few HSIL and SCC planted among them. It then
analyses the file with :func:`~papscreen.pipeline.analyze` **in a child process** (this script again, with
``--analyse``), so the peak resident memory it reports is the analysis's alone, not the writer's or the
training's: the parent reads ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once the child has exited, and the child
reports its own ``ru_maxrss`` too, with its summary, as JSON on stdout. The child's peak includes Python, torch and
both models, as a worker's would.

Target: peak RSS <= 2 GB (10^9 bytes) for a 40000x40000 slide. The baseline, in the same run, is what decoding
level 0 whole would take before any analysis (width x height x 3 bytes: 4.8 GB for 40000x40000); the script prints
how many times less the measured peak is.

Models: ``--stage1``/``--stage2`` folders when given; otherwise a stage 1 trained in a minute on a small synthetic
DB_3 and the default stage 2 (ResNet50, random weights; speed does not depend on their values), built by the
parent into the work folder before the child starts (``benchmarks/_bench_models.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench_models import bench_model_folders, bench_models

from papscreen.config import Settings
from papscreen.datasets.synthetic import SlidePlan, write_synthetic_slide
from papscreen.imaging.slides import open_slide
from papscreen.models.device import describe_machine, resolve_device
from papscreen.pipeline import analyze, resolve_precision

TARGET_BYTES = 2 * 10**9
GB = 10**9
BLOCK_PX = 2048
RESULT_PREFIX = "RESULT "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=40_000, help="slide width and height, level-0 px")
    parser.add_argument("--tissue-blocks", type=int, default=6, help=f"{BLOCK_PX}-px blocks of cells, near the middle")
    parser.add_argument("--cells-per-block", type=int, default=40, help="NILM cells in each tissue block")
    parser.add_argument("--planted", default="HSIL=4,SCC=2", help="abnormal cells spread over the tissue blocks")
    parser.add_argument("--out", type=Path, help="work folder (slide, models); default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the slide after the run")
    parser.add_argument("--stage1", type=Path, help="a saved stage-1 model folder (default: train a quick one)")
    parser.add_argument("--stage2", type=Path, help="a saved stage-2 model folder (default: random ResNet50)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", help="stage-2 precision: auto, fp32, bf16 or int8")
    parser.add_argument(
        "--batch-size", type=int, default=0, help="stage-2 crops per forward pass (default: the setting for the device)"
    )
    parser.add_argument("--reader-threads", type=int, default=0, help="reader threads (default: the setting, auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--analyse", type=Path, help=argparse.SUPPRESS)  # the child's mode: analyse this slide
    return parser.parse_args()


def central_blocks(size: int, count: int) -> tuple[tuple[int, int], ...]:
    """The ``count`` blocks nearest the slide's middle (as a smear's spot of cells), nearest first."""
    across = math.ceil(size / BLOCK_PX)
    middle = (across - 1) / 2
    blocks = sorted(
        ((c, r) for r in range(across) for c in range(across)),
        key=lambda b: ((b[0] - middle) ** 2 + (b[1] - middle) ** 2, b[1], b[0]),
    )
    if count > len(blocks):
        raise SystemExit(f"--tissue-blocks {count}: a {size}-px slide has only {len(blocks)} blocks")
    return tuple(blocks[:count])


def parse_counts(text: str) -> dict[str, int]:
    """``"HSIL=4,SCC=2"`` -> ``{"HSIL": 4, "SCC": 2}``."""
    counts = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, _, count = part.partition("=")
        counts[label.strip().upper()] = int(count)
    return counts


def settings_for(args: argparse.Namespace, home: Path) -> Settings:
    """Default analysis settings, with the precision and stage-2 batch size asked for."""
    device = "cuda" if args.device.startswith("cuda") else args.device
    return Settings(
        home=home,
        device=device,
        analysis={"precision": args.precision, "reader_threads": args.reader_threads},
        batch={"stage2_inference": args.batch_size, "stage2_inference_gpu": args.batch_size} if args.batch_size else {},
    )


def child(args: argparse.Namespace) -> None:
    """Load the models, analyse the slide, print the summary and this process's peak RSS as one JSON line."""
    workdir = args.analyse.parent
    models = bench_models(args.stage1, args.stage2, args.device, args.precision, workdir)
    after_models_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    settings = settings_for(args, workdir / "home")
    with open_slide(args.analyse) as slide:
        reader = type(slide).__name__
        result = analyze(slide, models, settings)
    summary = result.summary
    report: dict[str, Any] = {
        "reader": reader,
        "dimensions": list(summary.dimensions),
        "stage1_level": summary.stage1_level,
        "cell_count": summary.cell_count,
        "class_counts": summary.class_counts,
        "category": summary.category,
        "tiles": summary.tiles,
        "device": summary.device,
        "precision": summary.precision,
        "timings": summary.timings,
        "maxrss_after_models_kib": after_models_kib,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(RESULT_PREFIX + json.dumps(report), flush=True)


def run_child(args: argparse.Namespace, slide: Path, stage1: Path, stage2: Path) -> tuple[dict[str, Any], int]:
    """Analyse ``slide`` in a fresh interpreter; its report and its peak RSS (KiB) as the kernel accounts it."""
    command = [sys.executable, str(Path(__file__).resolve()), "--analyse", str(slide)]
    command += ["--stage1", str(stage1), "--stage2", str(stage2), "--device", args.device]
    command += ["--precision", args.precision, "--batch-size", str(args.batch_size)]
    command += ["--reader-threads", str(args.reader_threads)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = None
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            report = json.loads(line[len(RESULT_PREFIX) :])
        else:
            print(f"  child: {line}")
    if done.returncode or report is None:
        raise SystemExit(f"the analysis failed (exit status {done.returncode}); its error is printed above")
    if peak_kib < before:  # cannot happen (a maximum), but never report another child's peak as this one's
        raise SystemExit("RUSAGE_CHILDREN went down")
    return report, peak_kib


def parent(args: argparse.Namespace, workdir: Path) -> None:
    """Write the slide, prepare the models, analyse in a child, print the results."""
    print(f"machine: {describe_machine()}")
    torch_device = resolve_device(args.device)
    resolve_precision(args.precision, torch_device)  # refuse a bad choice before minutes of writing
    plan = SlidePlan(
        args.size,
        args.size,
        tissue_blocks=central_blocks(args.size, args.tissue_blocks),
        composition={"NILM": args.cells_per_block},
        planted=parse_counts(args.planted),
        block_px=BLOCK_PX,
        seed=args.seed,
    )
    slide = workdir / f"synthetic-{args.size}.tif"
    start = time.perf_counter()
    truth = write_synthetic_slide(slide, plan, tile_px=512, downsamples=(1, 4, 16), compression="jpeg", overwrite=True)
    write_s = time.perf_counter() - start
    writer_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    truth_counts = ", ".join(f"{k} {v}" for k, v in plan.cell_counts.items())
    print(
        f"slide: {args.size}x{args.size} px, {args.tissue_blocks} tissue blocks of {BLOCK_PX} px, "
        f"{len(truth)} squamous cells ({truth_counts}); JPEG tiled TIFF, levels 1/4/16"
    )
    print(
        f"file: {slide.stat().st_size / 10**6:.0f} MB, written in {write_s:.1f} s (writer process peak RSS "
        f"{writer_kib * 1024 / GB:.2f} GB)"
    )

    stage1, stage2, lines = bench_model_folders(
        args.stage1, args.stage2, workdir, int8=resolve_precision(args.precision, torch_device) == "int8"
    )
    for line in lines:
        print(line)
    print("analysing in a child process ...")
    report, peak_kib = run_child(args, slide, stage1, stage2)

    t = report["timings"]
    peak = peak_kib * 1024
    whole = args.size * args.size * 3
    cells = report["cell_count"]
    print(
        f"reader: {report['reader']}, stage 1 on level {report['stage1_level']}, "
        f"device {report['device']}, stage 2 at {report['precision']}"
    )
    print(f"analysis wall time: {t['total']:.1f} s")
    print(
        f"cells found: {cells} ({', '.join(f'{k} {v}' for k, v in report['class_counts'].items())}; "
        f"truth {len(truth)}), category {report['category']}"
    )
    print(f"cells per second: {cells / t['total']:.1f}")
    print(f"tiles analysed: {report['tiles']['analysed']}/{report['tiles']['total']} (the rest empty glass)")
    print(
        f"time breakdown: read {t['read']:.1f} s (reader threads, overlapping compute), "
        f"stage 1 {t['stage1']:.1f} s, stage 2 {t['stage2']:.1f} s, "
        f"other {max(0.0, t['total'] - t['stage1'] - t['stage2']):.1f} s"
    )
    print(
        f"peak RSS of the analysis process: {peak / GB:.2f} GB (RUSAGE_CHILDREN; the child saw "
        f"{report['maxrss_kib'] * 1024 / GB:.2f} GB, {report['maxrss_after_models_kib'] * 1024 / GB:.2f} GB of it "
        "already with torch and both models loaded)"
    )
    print(f"peak RSS <= {TARGET_BYTES / GB:.0f} GB: {'PASS' if peak <= TARGET_BYTES else 'FAIL'}")
    print(
        f"baseline: decoding level 0 whole needs {whole / GB:.1f} GB ({args.size}x{args.size}x3 bytes); "
        f"the analysis peaked at {peak / GB:.2f} GB: "
        + (
            f"{whole / peak:.1f}x less than decoding level 0 whole"
            if whole >= peak
            else f"{peak / whole:.1f}x MORE than decoding level 0 whole (a slide this small fits in memory anyway)"
        )
    )


def main() -> None:
    """Parent: write, then analyse in a child and report. Child (``--analyse``): analyse and report JSON."""
    args = parse_args()
    if args.analyse is not None:
        child(args)
        return
    if args.out is not None or args.keep:
        workdir = args.out or Path(tempfile.mkdtemp(prefix="papscreen-slide-memory-"))
        workdir.mkdir(parents=True, exist_ok=True)
        parent(args, workdir.resolve())
        slide = workdir / f"synthetic-{args.size}.tif"
        if args.keep:
            print(f"slide kept: {slide}")
        else:
            slide.unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="papscreen-slide-memory-") as tmp:  # on disk: $TMPDIR, else /tmp
        parent(args, Path(tmp))


if __name__ == "__main__":
    main()
