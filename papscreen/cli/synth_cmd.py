"""``papscreen synth``: generate the synthetic DB_3, DB_4 and fields that tests, the demo and CI run on."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from papscreen.bethesda import BETHESDA_CLASSES, LEGACY_DB4_FOLDERS
from papscreen.cli.common import console, fail_cleanly, progress_bar
from papscreen.datasets.synthetic import SyntheticSummary, generate_synthetic

app = typer.Typer()

_FOLDER_OF = {label: folder for folder, label in LEGACY_DB4_FOLDERS.items()}


class Scale(StrEnum):
    """How much to generate."""

    small = "small"
    full = "full"


def summary_table(summary: SyntheticSummary) -> Table:
    """A table of what was generated, per dataset, split and class."""
    table = Table(
        title=f"Synthetic data in {summary.out_dir} (seed {summary.seed}, {summary.scale}, {summary.seconds:.1f} s)"
    )
    table.add_column("Dataset")
    table.add_column("Split")
    table.add_column("Class")
    table.add_column("Count", justify="right")
    for split, counts in summary.db3.items():
        for name, count in counts.items():
            table.add_row("DB_3", split, name, str(count))
    for split, counts in summary.db4.items():
        for label, count in counts.items():
            table.add_row("DB_4", split, f"{label} (folder {_FOLDER_OF[label]})", str(count))
    table.add_row("fields", "", "images", str(summary.n_fields))
    for label in BETHESDA_CLASSES:
        table.add_row("fields", "", f"{label} cells", str(summary.field_cells.get(label, 0)))
    table.add_row("fields", "", "inflammatory cells", str(summary.field_inflammatory))
    return table


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write DB_3/, DB_4/, fields/ and manifest.json into.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical files.")] = 0,
    scale: Annotated[
        Scale, typer.Option("--scale", case_sensitive=False, help="small: seconds, for tests; full: the demo.")
    ] = Scale.small,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Delete earlier synthetic output in --out instead of refusing.")
    ] = False,
) -> None:
    """Generate synthetic Pap smear datasets (DB_3 patches, DB_4 crops, annotated fields), offline."""
    with fail_cleanly(), progress_bar() as progress:
        summary = generate_synthetic(
            out,
            seed=seed,
            scale=scale.value,
            overwrite=overwrite,
            progress=lambda done, total, _what: progress("generating", done, total),
        )
    console.print(summary_table(summary))
