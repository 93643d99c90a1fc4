"""``papscreen analyze-image IMAGE``: both stages on one field image; the cells found and the per-class counts.

A quick check of a model pair on a single field of view (a few megapixels, read whole), printed as a table. It
runs the slide engine (:func:`papscreen.pipeline.analyze`), as ``papscreen analyze`` does, without writing its
exports.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.cli.common import console, err_console, fail_cleanly, settings_from
from papscreen.cli.model_refs import MODEL_REF_HELP, resolve_model_ref
from papscreen.imaging.image_io import read_rgb
from papscreen.imaging.slides import ArraySlideReader
from papscreen.pipeline import analyze, load_model_pair

__all__ = ["app"]

app = typer.Typer()


@app.command("analyze-image")
def analyze_image(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="A field-of-view image (JPEG, PNG, TIFF, BMP).")],
    stage1: Annotated[str, typer.Option("--stage1", help=MODEL_REF_HELP)] = "stage1",
    stage2: Annotated[str, typer.Option("--stage2", help=MODEL_REF_HELP)] = "stage2",
    precision: Annotated[str, typer.Option("--precision", help="Stage-2 inference: fp32, bf16 or int8.")] = "fp32",
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda (default: the setting).")] = None,
    rows: Annotated[int, typer.Option("--rows", min=0, help="Cells listed, most suspicious first.")] = 30,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write every cell to this CSV file.")] = None,
) -> None:
    """Find the cells of one field image, grade each, and print them with the per-class counts."""
    settings = settings_from(ctx)
    with fail_cleanly():
        models = load_model_pair(
            resolve_model_ref(ctx, stage1),
            resolve_model_ref(ctx, stage2),
            device=device or settings.device,
            precision=precision,
        )
        rgb = read_rgb(image, max_pixels=settings.limits.max_image_pixels)
        cells = analyze(ArraySlideReader(rgb, path=image), models, settings).cells
    classes = list(cells.classes)
    predicted = cells.predicted
    order = np.argsort(-cells.suspicion, kind="stable")
    err_console.print(f"{image.name}: {rgb.shape[1]}x{rgb.shape[0]} px, {len(cells)} cells found")

    table = Table(title=f"cells of {image.name}, most suspicious first")
    for column in ("#", "x", "y", "cell score", "class", *(f"p({c})" for c in classes)):
        table.add_column(column, justify="right")
    for rank, i in enumerate(order[:rows], start=1):
        table.add_row(
            str(rank),
            f"{cells.xy[i, 0]:.0f}",
            f"{cells.xy[i, 1]:.0f}",
            f"{cells.detection_scores[i]:.2f}",
            classes[predicted[i]],
            *(f"{p:.3f}" for p in cells.probabilities[i]),
        )
    if rows and len(cells):
        console.print(table)
    counts = Table(title="cells per class")
    ordered = [c for c in BETHESDA_CLASSES if c in classes] + [c for c in classes if c not in BETHESDA_CLASSES]
    for name in (*ordered, "total"):
        counts.add_column(name, justify="right")
    tally = np.bincount(predicted, minlength=len(classes))
    counts.add_row(*(str(tally[classes.index(c)]) for c in ordered), str(len(cells)))
    console.print(counts)
    if csv_out is not None:
        with csv_out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["x", "y", "cell_score", "class", *(f"p_{c}" for c in classes)])
            for i in range(len(cells)):
                writer.writerow(
                    [f"{cells.xy[i, 0]:.1f}", f"{cells.xy[i, 1]:.1f}", f"{cells.detection_scores[i]:.4f}"]
                    + [classes[predicted[i]]]
                    + [f"{p:.5f}" for p in cells.probabilities[i]]
                )
        console.print(f"wrote {len(cells)} cells to {csv_out}")
