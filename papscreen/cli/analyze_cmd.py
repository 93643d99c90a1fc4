"""``papscreen analyze SLIDE --out DIR``: the slide engine on one scan, with its exports.

Any scan papscreen reads (a field image or a whole-slide pyramid) goes through :func:`papscreen.pipeline.analyze`
tile by tile; the folder receives ``cells.csv``, ``summary.json``, ``overlay.png``, ``gallery.png`` and
``cells.geojson`` (QuPath). The same is a library call: ``analyze(open_slide(path), load_model_pair(...), settings)``
then ``write_exports(result, folder)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from papscreen.cli.common import console, err_console, fail_cleanly, progress_bar, settings_from
from papscreen.cli.model_refs import MODEL_REF_HELP, resolve_model_ref
from papscreen.errors import PapscreenError
from papscreen.imaging.slides import open_slide
from papscreen.pipeline import analyze, load_model_pair
from papscreen.pipeline.export import write_exports

__all__ = ["app"]

app = typer.Typer()


@app.command("analyze")
def analyze_command(
    ctx: typer.Context,
    slide: Annotated[
        Path, typer.Argument(help="A scan: field image (JPEG, PNG, TIFF, BMP) or whole slide (SVS, ...).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for cells.csv, summary.json, PNGs and GeoJSON.")],
    stage1: Annotated[str, typer.Option("--stage1", help=MODEL_REF_HELP)] = "stage1",
    stage2: Annotated[str, typer.Option("--stage2", help=MODEL_REF_HELP)] = "stage2",
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda (default: the setting).")] = None,
    precision: Annotated[
        str | None, typer.Option("--precision", help="auto, fp32, bf16, int8 (default: the setting).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export in the folder.")] = False,
) -> None:
    """Find, grade and summarise every cell of a scan; write the exports into a folder."""
    settings = settings_from(ctx)
    with fail_cleanly():
        models = load_model_pair(
            resolve_model_ref(ctx, stage1),
            resolve_model_ref(ctx, stage2),
            device=device or settings.device,
            precision=precision or settings.analysis.precision,
        )
        limits = settings.limits
        try:
            with (
                open_slide(
                    slide, max_file_bytes=limits.max_file_bytes, max_image_pixels=limits.max_image_pixels
                ) as scan,
                progress_bar() as progress,
            ):
                result = analyze(scan, models, settings, progress=progress)
            paths = write_exports(result, out, overwrite=overwrite)
        except (FileExistsError, ValueError) as e:
            raise PapscreenError(str(e)) from e
    summary = result.summary
    err_console.print(
        f"{slide.name}: {summary.dimensions[0]}x{summary.dimensions[1]} px ({summary.scan_kind}), "
        f"{summary.cell_count} cells in {summary.timings['total']:.1f} s on {summary.device} ({summary.precision})"
    )
    table = Table(title=f"{slide.name}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("category", summary.category)
    table.add_row("abnormal score", f"{summary.abnormal_score:.3f}")
    table.add_row("why", summary.category_reason)
    table.add_row("adequacy", f"{summary.adequacy} ({summary.adequacy_reason})")
    for name, count in summary.class_counts.items():
        table.add_row(f"{name} cells", str(count))
    console.print(table)
    console.print(f"wrote {', '.join(p.name for p in paths.values())} to {out}")
