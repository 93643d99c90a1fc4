"""``papscreen models ...``: the model registry as the command line sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from papscreen.cli.common import console, err_console, fail_cleanly, open_database, settings_from
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage
from papscreen.models.card import ModelCard
from papscreen.models.checkpoints import load_weights
from papscreen.tasks.registry import register_saved_model, register_shipped_models

app = typer.Typer(no_args_is_help=True, help="List, register and promote models.")

KEY_METRICS = ("macro_f1", "accuracy", "f1", "recall", "ece")


def announce_saved_model(database: Database | None, folder: Path, card: ModelCard, *, actor: str) -> None:
    """Say where a new model was saved and register it (``database`` None: say how to register it later)."""
    console.print(f"saved {card.stage} model {card.name} to {folder}")
    if database is None:
        console.print("not registered (--no-register): `papscreen models register FOLDER` registers it later")
        return
    version = register_saved_model(database, folder, card, actor=actor)
    console.print(f"registered as model {version.id}: {version.status.value}")


def _metric_text(metrics: dict) -> str:
    shown = [f"{k}={metrics[k]:.3f}" for k in KEY_METRICS if isinstance(metrics.get(k), int | float)]
    return ", ".join(shown) or "-"


@app.command("list")
def list_models(
    ctx: typer.Context,
    stage: Annotated[ModelStage | None, typer.Option("--stage", help="Only this stage.")] = None,
) -> None:
    """Every registered model version, newest first, with its status and key metrics."""
    table = Table(title="model versions")
    for column in ("id", "stage", "status", "name", "architecture", "metrics", "created", "dataset"):
        table.add_column(column)
    with open_database(ctx) as database, database.session() as session:
        versions = queries.list_model_versions(session, stage)
        for v in versions:
            table.add_row(
                str(v.id),
                v.stage.value,
                f"[bold green]{v.status.value}[/]" if v.status.value == "champion" else v.status.value,
                v.name,
                v.architecture,
                _metric_text(v.metrics),
                f"{v.created_at:%Y-%m-%d %H:%M}",
                (v.dataset_fingerprint or "-")[:16],
            )
    if not versions:
        console.print("No models registered yet: train one (`papscreen train ...`) or register a saved one.")
        return
    console.print(table)


@app.command("promote")
def promote(
    ctx: typer.Context,
    model_id: Annotated[int, typer.Argument(help="Model version id (see `papscreen models list`).")],
    actor: Annotated[str, typer.Option("--as", help="Who promotes (recorded in the audit log).")] = "cli",
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")] = "manual promotion",
) -> None:
    """Make a model version its stage's champion; the previous champion is retired."""
    with open_database(ctx) as database:
        try:
            with database.session() as session:
                version = queries.promote(session, model_id, actor=actor, reason=reason)
                message = f"model {version.id} ({version.name}) is now the {version.stage.value} champion"
        except LookupError as e:
            err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            raise typer.Exit(2) from e
    console.print(message)


@app.command("approve")
def approve(
    ctx: typer.Context,
    model_id: Annotated[int, typer.Argument(help="A candidate whose training run is `pending approval`.")],
    actor: Annotated[str, typer.Option("--as", help="Who approves (recorded in the audit log).")] = "cli",
    decline: Annotated[
        bool, typer.Option("--decline", help="Decline it instead: rejected, the champion stays.")
    ] = False,
) -> None:
    """Approve (or --decline) a retrained model that passed the gate and waits for a person (policy `approve`)."""
    with open_database(ctx) as database:
        try:
            with database.session() as session:
                if decline:
                    version = queries.decline_candidate(session, model_id, actor=actor)
                    message = f"model {version.id} ({version.name}) declined; the champion stays"
                else:
                    version = queries.approve_candidate(session, model_id, actor=actor)
                    message = f"model {version.id} ({version.name}) is now the {version.stage.value} champion"
        except (LookupError, ValueError) as e:
            err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            raise typer.Exit(2) from e
    console.print(message)


@app.command("register")
def register(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="A saved model folder (model.safetensors + card.json).")],
    actor: Annotated[str, typer.Option("--as", help="Who registers (recorded in the audit log).")] = "cli",
) -> None:
    """Register a saved model (checked against its card) as a candidate; the first of a stage becomes champion."""
    with fail_cleanly():
        _, card = load_weights(folder)
    with open_database(ctx) as database:
        version = register_saved_model(database, folder, card, actor=actor)
    console.print(f"registered model {version.id} ({version.name}, {version.stage.value}) as {version.status.value}")


@app.command("install-shipped")
def install_shipped(ctx: typer.Context) -> None:
    """Make papscreen's shipped models (trained on real CRIC smears) the champions of stages that have none.

    `papscreen up` and `papscreen demo` do this by themselves; a Compose stack runs it after `db upgrade`. A stage
    that has a champion keeps it. See docs/models.md.
    """
    settings = settings_from(ctx)
    with fail_cleanly(), open_database(ctx) as database:
        outcome = register_shipped_models(database, settings.models_dir)  # type: ignore[arg-type]
    for stage, line in outcome.items():
        console.print(f"{stage.value}: {line}")
