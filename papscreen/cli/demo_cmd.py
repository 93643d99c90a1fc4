"""``papscreen demo``: set up a working papscreen on embedded defaults, from nothing, in one command.

It builds everything a lab would otherwise prepare by hand: the folders under ``PAPSCREEN_HOME``, the SQLite
database (migrated), and synthetic training data (DB_3, DB_4) plus demo field scans. Each step is skipped
when its result is already there, so running it again is cheap and never destroys anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from papscreen.cli.common import console, fail_cleanly, progress_bar, settings_from
from papscreen.cli.synth_cmd import Scale, summary_table
from papscreen.config import Settings
from papscreen.datasets.conventions import MANIFEST_NAME
from papscreen.datasets.synthetic import generate_synthetic
from papscreen.db import migrate
from papscreen.db.database import Database

app = typer.Typer()


def _prepare_database(settings: Settings) -> str:
    database = Database(settings.database_url)
    try:
        before = migrate.current_revision(database)
        migrate.upgrade(database)
        after = migrate.current_revision(database)
    finally:
        database.dispose()
    return f"{database!r}: schema {before or 'empty'} -> {after}"


def _prepare_synthetic_data(data_dir: Path, scale: Scale, seed: int) -> str:
    manifest = data_dir / MANIFEST_NAME
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        return f"synthetic data already in {data_dir} (scale {made.get('scale')}, seed {made.get('seed')}); kept"
    with progress_bar() as progress:
        summary = generate_synthetic(
            data_dir,
            seed=seed,
            scale=scale.value,
            progress=lambda done, total, _what: progress("synthetic data", done, total),
        )
    console.print(summary_table(summary))
    return f"synthetic data written to {data_dir} in {summary.seconds:.0f} s"


@app.command("demo")
def demo(
    ctx: typer.Context,
    scale: Annotated[
        Scale, typer.Option("--scale", case_sensitive=False, help="Synthetic data size: small (seconds) or full.")
    ] = Scale.small,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic data.")] = 0,
) -> None:
    """Set up papscreen on embedded defaults (SQLite, local folders, synthetic data) and show what is there."""
    settings = settings_from(ctx)
    with fail_cleanly():
        settings.ensure_folders()
        steps = [
            ("folders", f"under {settings.home}"),
            ("database", _prepare_database(settings)),
            ("training data", _prepare_synthetic_data(settings.data_dir, scale, seed)),
        ]
    table = Table(title="papscreen demo", show_header=False)
    for step, outcome in steps:
        table.add_row(f"[bold]{step}[/]", outcome)
    for name, path in settings.folders().items():
        table.add_row(name, str(path))
    console.print(table)
    console.print(
        "Next: `papscreen dataset stats "
        f"{settings.data_dir / 'DB_4'}` shows the training data; "
        f"demo scans are in {settings.data_dir / 'fields' / 'images'}.",
        soft_wrap=True,
    )
