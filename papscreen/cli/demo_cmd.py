"""``papscreen demo``: papscreen running on embedded defaults, from nothing, in one command.

It builds what a lab would otherwise prepare by hand: the folders under ``PAPSCREEN_HOME``, the SQLite
database (migrated), synthetic training data (DB_3, DB_4, for the nightly retraining to work on) and, when a
stage has no champion, papscreen's shipped models trained on real CRIC smears (:mod:`papscreen.models.shipped`).
Then it drops four real CRIC fields (:mod:`papscreen.datasets.demo_fields`) into the intake folder and runs the
service (``papscreen up``) until Ctrl-C; with ``--once`` it runs one intake pass instead, prints the results and
exits. The nightly retraining on synthetic data cannot replace the shipped champions (the gate refuses a
challenger validated on synthetic data only). Every step is skipped when its result is already there,
so running it again is cheap and never destroys anything.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from papscreen.cli.common import console, fail_cleanly, progress_bar, settings_from
from papscreen.cli.service_cmd import install_default_models, local_prefect_server, prepare_database, run_service
from papscreen.cli.synth_cmd import Scale, summary_table
from papscreen.config import Settings
from papscreen.datasets.conventions import MANIFEST_NAME
from papscreen.datasets.demo_fields import demo_field_paths
from papscreen.datasets.synthetic import generate_synthetic
from papscreen.flows.intake import intake_flow

__all__ = ["app", "drop_demo_scans"]

app = typer.Typer()


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


def drop_demo_scans(settings: Settings) -> list[Path]:
    """Copy the demo scans (real CRIC fields shipped with papscreen) into the intake folder, each with ``.done``."""
    batch = settings.intake_dir / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}"  # type: ignore[operator]
    batch.mkdir(parents=True, exist_ok=True)
    dropped = []
    for scan in demo_field_paths():
        target = batch / scan.name
        shutil.copyfile(scan, target)
        (batch / f"{scan.name}.done").touch()
        dropped.append(target)
    return dropped


@app.command("demo")
def demo(
    ctx: typer.Context,
    scale: Annotated[
        Scale, typer.Option("--scale", case_sensitive=False, help="Synthetic data size: small (seconds) or full.")
    ] = Scale.small,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic data.")] = 0,
    once: Annotated[
        bool, typer.Option("--once", help="One intake pass (ingest and analyse the demo scans), then exit.")
    ] = False,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Do not start the dashboard.")] = False,
) -> None:
    """Set up papscreen on embedded defaults with its shipped models, drop real demo scans, and run the service."""
    settings = settings_from(ctx)
    with ExitStack() as stack, fail_cleanly():
        settings.ensure_folders()
        # the local Prefect server warms up while data and models are prepared (it needs none of them)
        server = None if once else stack.enter_context(local_prefect_server(settings))
        steps = [("folders", f"under {settings.home}"), ("database", prepare_database(settings))]
        steps.append(("training data", _prepare_synthetic_data(settings.data_dir, scale, seed)))  # type: ignore[arg-type]
        steps.append(("models", install_default_models(settings)))
        dropped = drop_demo_scans(settings)
        steps.append(("demo scans", f"{len(dropped)} dropped into {dropped[0].parent if dropped else '-'}"))
        _print_steps(steps)
        config = getattr(ctx.find_root().obj, "config_file", None)
        if once:
            report = intake_flow(config=str(config) if config else None, dispatch="inline")
            for analysis in report["analyses"]:
                console.print(
                    f"slide {analysis.get('slide_id')}: {analysis.get('status')} "
                    f"{analysis.get('cells', '')} cells {analysis.get('category', '')}"
                )
            return
        run_service(settings, str(config) if config else None, dashboard=not no_dashboard, server=server)


def _print_steps(steps: list[tuple[str, str]]) -> None:
    table = Table(title="papscreen demo", show_header=False)
    for step, outcome in steps:
        table.add_row(f"[bold]{step}[/]", outcome)
    console.print(table)
