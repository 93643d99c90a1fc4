"""``papscreen dataset``: inspect a DB_3/DB_4 dataset, or build both from point annotations.

Exit codes, the same for every command of the group:

* 0: done, no problem found;
* 1: done, but some files or rows had problems and were skipped (each is listed, naming the file);
* 2: stopped: the input cannot be used, the output folder is not empty, or ``--strict`` met a problem.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.cli.common import console, err_console, fail_cleanly, progress_bar, settings_from
from papscreen.datasets.build import (
    DEFAULT_HARD_BACKGROUND_FRACTION,
    BuildOptions,
    BuildReport,
    check_output_dir,
    plan_build,
    write_build,
)
from papscreen.datasets.conventions import DB3_CLASSES, DEFAULT_CROP_PX, DEFAULT_STAGE1_SCALE, MANIFEST_NAME, SPLITS
from papscreen.datasets.fingerprint import fingerprint_index, short_fingerprint
from papscreen.datasets.layout import DatasetIndex, read_dataset

__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "EXIT_STOPPED", "app"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_STOPPED = 2
MAX_PROBLEMS_SHOWN = 50

_EXIT_HELP = (
    "Exit codes: 0 done, no problem; 1 done, but problems were found and those files or rows skipped "
    "(each listed); 2 stopped, nothing done (unusable input, non-empty output, or a problem under --strict)."
)

app = typer.Typer(
    no_args_is_help=True,
    help=f"Inspect DB_3/DB_4 training datasets, or build both from point annotations. {_EXIT_HELP}",
)

_SCHEMES = {"db3": "cell/background folders", "numbered": "legacy folders 1..4", "named": "folders named by class"}


@contextmanager
def _stop_cleanly() -> Iterator[None]:
    """One line and exit code 2 for papscreen errors and for file-system or value errors, never a traceback."""
    with fail_cleanly(EXIT_STOPPED):
        try:
            yield
        except (OSError, ValueError) as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(EXIT_STOPPED) from e


def _print_problems(problems: Sequence[str], where: str | None = None) -> None:
    if not problems:
        return
    err_console.print(f"[bold yellow]{len(problems)} problem(s):[/]", highlight=False)
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        err_console.print(f"  - {escape(problem)}", highlight=False, soft_wrap=True)
    if len(problems) > MAX_PROBLEMS_SHOWN:
        more = f"; all are listed in {where}" if where else ""
        err_console.print(f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more{more}", highlight=False)


def _counts_table(title: str, counts: Mapping[str, Mapping[str, int]], classes: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for name in classes:
        row = [counts.get(split, {}).get(name, 0) for split in SPLITS]
        table.add_row(name, *map(str, row), str(sum(row)))
    totals = [sum(counts.get(split, {}).values()) for split in SPLITS]
    table.add_row("[bold]all[/]", *map(str, totals), str(sum(totals)), end_section=True)
    return table


@app.command("stats", epilog=_EXIT_HELP)
def stats(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A DB_3 or DB_4 folder (holding train/ and validation/).")],
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Decode every image to find corrupt ones (slower).")
    ] = True,
) -> None:
    """Count a dataset's images per split and class, with its kind, fingerprint and problems."""
    settings = settings_from(ctx)
    with _stop_cleanly():
        index: DatasetIndex = read_dataset(directory, verify=verify, extra_label_map=settings.labels.extra_label_map)
        fingerprint = fingerprint_index(index)
    title = f"{index.kind} ({_SCHEMES[index.scheme]}): {escape(str(index.root))}"
    console.print(_counts_table(title, index.counts(), index.class_names))
    console.print(
        f"fingerprint: [bold]{short_fingerprint(fingerprint)}[/] (sha256 {fingerprint})",
        highlight=False,
        soft_wrap=True,
    )
    if not verify:
        console.print("images not decoded (--no-verify): corrupt files would not be found", highlight=False)
    _print_problems(index.problems)
    raise typer.Exit(EXIT_PROBLEMS if index.problems else EXIT_OK)


def _print_report(report: BuildReport) -> None:
    db3 = report.db3_dir / MANIFEST_NAME
    console.print(_counts_table(f"DB_3 (stage 1): {escape(str(report.db3_dir))}", report.db3_counts, DB3_CLASSES))
    console.print(_counts_table(f"DB_4 (stage 2): {escape(str(report.db4_dir))}", report.db4_counts, BETHESDA_CLASSES))
    images = ", ".join(f"{split} {len(report.split[split])}" for split in SPLITS)
    console.print(f"images: {images} (split by image)", highlight=False)
    console.print(
        f"fingerprints: source {short_fingerprint(report.source_fingerprint)}, "
        f"DB_3 {short_fingerprint(report.db3_fingerprint)}, DB_4 {short_fingerprint(report.db4_fingerprint)}",
        highlight=False,
        soft_wrap=True,
    )
    if report.hard_background:
        console.print(f"{report.hard_background} DB_3 background patch(es) are hard (clear only at the centre)")
    if report.padded:
        console.print(f"{report.padded} patch(es) reached past the border and were padded by reflection")
    _print_problems(report.problems, where=str(db3))


@app.command("build", epilog=_EXIT_HELP)
def build(
    ctx: typer.Context,
    annotated_dir: Annotated[
        Path, typer.Argument(help="Folder with images/ and a CSV of points (image,x,y,label or bethesda).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; DB_3/ and DB_4/ are written in it.")],
    crop_size: Annotated[int, typer.Option("--crop-size", min=2, help="DB_4 crop side, full-resolution px.")] = (
        DEFAULT_CROP_PX
    ),
    stage1_scale: Annotated[
        float,
        typer.Option("--stage1-scale", min=0.01, max=10.0, help="Stage-1 working scale: window = 20 / scale px."),
    ] = DEFAULT_STAGE1_SCALE,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", min=0.01, max=0.99, help="Validation share of each class.")
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the split and the background patches.")] = 0,
    numbered: Annotated[bool, typer.Option("--numbered", help="Legacy DB_4 folders 1..4 (1=HSIL ... 4=SCC).")] = False,
    hard_background_fraction: Annotated[
        float,
        typer.Option(
            "--hard-background-fraction",
            min=0.0,
            max=1.0,
            help="Share of DB_3 background patches clear only at their centre (cytoplasm, debris, off-centre "
            "nuclei) rather than empty glass; 0 gives glass-only background.",
        ),
    ] = DEFAULT_HARD_BACKGROUND_FRACTION,
    abnormal_repeat: Annotated[
        int,
        typer.Option(
            "--abnormal-repeat",
            min=1,
            max=20,
            help="DB_3 cell patches per abnormal (LSIL or worse) nucleus, the extra ones slightly shifted: "
            "abnormal nuclei are rare in the annotations, and stage 1 misses them without this.",
        ),
    ] = 1,
    strict: Annotated[bool, typer.Option("--strict", help="Stop before writing anything if any problem.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace DB_3/ and DB_4/ in a non-empty --out.")] = (
        False
    ),
) -> None:
    """Cut DB_3 (cell/background patches) and DB_4 (class crops) from point-annotated fields, split by image.

    The label map for extra Bethesda labels (ASC-US, ASC-H) comes from the settings (labels.extra_label_map).
    """
    settings = settings_from(ctx)
    with _stop_cleanly():
        options = BuildOptions(
            crop_px=crop_size,
            stage1_scale=stage1_scale,
            val_fraction=val_fraction,
            seed=seed,
            extra_label_map=dict(settings.labels.extra_label_map),
            numbered=numbered,
            hard_background_fraction=hard_background_fraction,
            abnormal_repeat=abnormal_repeat,
        )
        check_output_dir(out, overwrite)
        with progress_bar() as progress:
            plan = plan_build(annotated_dir, options, progress=progress)
        if strict and plan.problems:
            _print_problems(plan.problems)
            err_console.print(
                f"[bold red]error:[/] stopped (--strict): {len(plan.problems)} problem(s), nothing written",
                highlight=False,
            )
            raise typer.Exit(EXIT_STOPPED)
        with progress_bar() as progress:
            report = write_build(plan, out, overwrite=overwrite, progress=progress)
    _print_report(report)
    raise typer.Exit(EXIT_PROBLEMS if report.problems else EXIT_OK)
