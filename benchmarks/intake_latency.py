"""What the service adds to the science: scans through the intake flow against the same scans analysed directly.

    .venv/bin/python benchmarks/intake_latency.py                  # 8 fields of 2048x1536, CPU
    .venv/bin/python benchmarks/intake_latency.py --scans 20 --device cuda

``--scans`` synthetic fields (:func:`~papscreen.datasets.synthetic.render_field`, 2048x1536) are written as PNGs.
Baseline, in the same run: each PNG opened and analysed by :func:`~papscreen.pipeline.analyze` in a plain loop with
models loaded once (what the science costs). Service: the same PNGs (copies, each with a ``.done`` marker) dropped
into a fresh intake folder and taken by one ``intake_flow`` pass with in-process analyses, against an ephemeral
Prefect API and a SQLite database: claim, checks, moves, one analyze-slide flow per scan with its tasks, model
loading (once: the per-process cache), exports, and cells stored in the database. The script prints both times,
their ratio (the orchestration's overhead), and per scan the time from its arrival in the database (claimed) to
its result stored (``finished_at - received_at``).

Models: ``--stage1``/``--stage2`` folders when given, else those of ``benchmarks/_bench_models.py`` (a stage 1
trained in a minute, the default ResNet50 stage 2 with random weights: speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench_models import bench_model_folders

from papscreen.config import load_settings
from papscreen.datasets.synthetic import render_field
from papscreen.db import migrate, queries
from papscreen.db.database import Database
from papscreen.db.schema import SlideStatus
from papscreen.flows.intake import intake_flow
from papscreen.imaging.image_io import write_rgb
from papscreen.imaging.slides import open_slide
from papscreen.models.card import read_card
from papscreen.models.checkpoints import resolve_card_path
from papscreen.models.device import describe_machine, resolve_device
from papscreen.pipeline import analyze, load_model_pair
from papscreen.tasks.registry import register_saved_model

COMPOSITION = {"NILM": 40, "LSIL": 4, "HSIL": 4, "SCC": 2}


def _write_fields(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        field = render_field(np.random.default_rng(1000 + i), COMPOSITION)
        path = folder / f"field_{i:03d}.png"
        write_rgb(path, field.rgb)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stage1", type=Path)
    parser.add_argument("--stage2", type=Path)
    parser.add_argument("--workdir", type=Path, help="Keeps the models between runs (default: a temporary folder).")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="papscreen-bench-"))
    home = Path(tempfile.mkdtemp(prefix="papscreen-intake-bench-"))
    for name in [n for n in os.environ if n.startswith("PAPSCREEN_")]:
        del os.environ[name]
    os.environ.update(PAPSCREEN_HOME=str(home), PAPSCREEN_DEVICE=args.device, PAPSCREEN_INTAKE__SETTLE_SECONDS="3600")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = load_settings()
    settings.ensure_folders()
    print(f"machine: {describe_machine(resolve_device(args.device))}")
    stage1, stage2, lines = bench_model_folders(args.stage1, args.stage2, workdir)
    for line in lines:
        print(line)
    scans = _write_fields(workdir / "scans", args.scans)

    pair = load_model_pair(stage1, stage2, device=args.device, precision=settings.analysis.precision)
    with open_slide(scans[0]) as slide:
        analyze(slide, pair, settings)  # warm-up, as the service's first analysis also pays it
    start = time.perf_counter()
    cells = 0
    for path in scans:
        with open_slide(path) as slide:
            cells += analyze(slide, pair, settings).summary.cell_count
    direct = time.perf_counter() - start
    print(f"direct: {args.scans} scans, {cells} cells in {direct:.1f} s ({direct / args.scans:.2f} s per scan)")

    database = Database(settings.database_url)
    migrate.upgrade(database)
    for folder in (stage1, stage2):
        register_saved_model(database, folder, read_card(resolve_card_path(folder)), actor="benchmark")
    intake_flow(analyze=False)  # start Prefect's ephemeral API and create the compute limit before timing
    for path in scans:
        shutil.copyfile(path, settings.intake_dir / path.name)
        (settings.intake_dir / f"{path.name}.done").touch()
    start = time.perf_counter()
    report = intake_flow(dispatch="inline")
    service = time.perf_counter() - start
    done = [a for a in report["analyses"] if a.get("status") == "done"]
    print(f"service: {len(done)} of {args.scans} scans analysed through the intake flow in {service:.1f} s")
    with database.session() as session:
        slides = [s for s in queries.list_slides(session) if s.status == SlideStatus.DONE]
        latency = sorted((s.finished_at - s.received_at).total_seconds() for s in slides)
    print(
        f"claimed -> result stored: median {statistics.median(latency):.1f} s, first {latency[0]:.1f} s, "
        f"last {latency[-1]:.1f} s (scans of one pass are analysed one after the other)"
    )
    print(f"ratio service / direct: {service / direct:.2f}x "
          f"(orchestration overhead {(service - direct) / args.scans:.2f} s per scan)")  # fmt: skip
    database.dispose()
    shutil.rmtree(home, ignore_errors=True)
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
