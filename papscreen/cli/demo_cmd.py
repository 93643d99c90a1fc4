"""``papscreen demo``: papscreen running on embedded defaults, from nothing, in one command.

It builds what a lab would otherwise prepare by hand: the folders under ``PAPSCREEN_HOME``, the SQLite
database (migrated), synthetic training data (DB_3, DB_4) and demo scans, and, when a stage has no champion,
a quick model of each stage (seconds to a minute on a CPU: a demo, not a screening model). Then it drops the
demo scans into the intake folder and runs the service (``papscreen up``) until Ctrl-C; with ``--once`` it runs
one intake pass instead, prints the results and exits. Every step is skipped when its result is already there,
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
from papscreen.cli.service_cmd import local_prefect_server, prepare_database, run_service
from papscreen.cli.synth_cmd import Scale, summary_table
from papscreen.config import Settings
from papscreen.datasets.conventions import MANIFEST_NAME
from papscreen.datasets.layout import read_dataset
from papscreen.datasets.synthetic import generate_synthetic
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage
from papscreen.flows.intake import intake_flow
from papscreen.models.checkpoints import model_folder_name
from papscreen.models.device import torch_threads
from papscreen.models.evaluation import evaluate_stage1
from papscreen.models.train_stage1 import train_stage1
from papscreen.models.train_stage2 import train_stage2
from papscreen.tasks.registry import register_saved_model

__all__ = ["DEMO_STAGE2_RECIPE", "app"]

app = typer.Typer()

DEMO_STAGE1_EPOCHS = 8
DEMO_STAGE2_RECIPE = {
    "architecture": "resnet18",
    "mode": "finetune",
    "epochs": 8,
    "patience": 8,
    "input_size": 64,
    "crop_size": 96,
    "augment": "dihedral",
    "lr": 3e-3,
    "seed": 0,
}
"""A ResNet18 from random initialisation on small crops: under a minute on two CPU cores; a demo model only."""


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


def _champion_names(database: Database) -> dict[ModelStage, str | None]:
    with database.session() as session:
        return {stage: getattr(queries.get_champion(session, stage), "name", None) for stage in ModelStage}


def _train_demo_models(settings: Settings, database: Database) -> str:
    """Train and register a quick model for each stage without a champion."""
    champions = _champion_names(database)
    done = []
    with torch_threads(1):  # small networks train fastest on one thread (models/device.py)
        if champions[ModelStage.STAGE1] is None:
            index = read_dataset(settings.data_dir / "DB_3")  # type: ignore[operator]
            result = train_stage1(index, epochs=DEMO_STAGE1_EPOCHS, seed=0)
            evaluation = evaluate_stage1(result.detector, index)
            folder = settings.models_dir / model_folder_name("stage1", result.detector.architecture)  # type: ignore[operator]
            metrics = evaluation.metrics.to_dict() | {"f1": result.metrics["f1"]}
            card = result.detector.to_checkpoint(folder, metrics, result.dataset_fingerprint, result.training)
            register_saved_model(database, folder, card, actor="papscreen demo")
            done.append(f"stage 1 ({card.name})")
        if champions[ModelStage.STAGE2] is None:
            result2 = train_stage2(read_dataset(settings.data_dir / "DB_4"), **DEMO_STAGE2_RECIPE)  # type: ignore[operator, arg-type]
            folder = settings.models_dir / model_folder_name("stage2", "resnet18")  # type: ignore[operator]
            card = result2.save(folder)
            register_saved_model(database, folder, card, actor="papscreen demo")
            done.append(f"stage 2 ({card.name}, validation macro-F1 {result2.metrics.macro_f1:.2f})")
    if not done:
        names = ", ".join(f"{s.value} {n}" for s, n in champions.items())
        return f"champions already there ({names}); kept"
    return "trained and promoted " + " and ".join(done)


def drop_demo_scans(settings: Settings) -> list[Path]:
    """Copy the demo field scans into the intake folder, each with a ``.done`` marker (taken at once)."""
    source = settings.data_dir / "fields" / "images"  # type: ignore[operator]
    batch = settings.intake_dir / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}"  # type: ignore[operator]
    batch.mkdir(parents=True, exist_ok=True)
    dropped = []
    for scan in sorted(source.glob("*.png")):
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
    """Set up papscreen on embedded defaults, train quick demo models, drop demo scans, and run the service."""
    settings = settings_from(ctx)
    with ExitStack() as stack, fail_cleanly():
        settings.ensure_folders()
        # the local Prefect server warms up while data and models are prepared (it needs none of them)
        server = None if once else stack.enter_context(local_prefect_server(settings))
        steps = [("folders", f"under {settings.home}"), ("database", prepare_database(settings))]
        steps.append(("training data", _prepare_synthetic_data(settings.data_dir, scale, seed)))  # type: ignore[arg-type]
        database = Database(settings.database_url)
        try:
            steps.append(("models", _train_demo_models(settings, database)))
        finally:
            database.dispose()
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
