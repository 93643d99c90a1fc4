"""``papscreen retrain`` and ``papscreen validate``: the nightly flows, run now in the foreground.

The commands call the flows directly: with ``PREFECT_API_URL`` set they report to that server, otherwise Prefect
starts a temporary local API for the run. The outcome is read back from the database, so a stage that failed
still shows in the table beside the one that succeeded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from papscreen.cli.common import AppState, console, err_console, open_database
from papscreen.db import queries
from papscreen.db.schema import ModelStage
from papscreen.flows.retrain import retrain_flow
from papscreen.flows.validate import validate_flow

__all__ = ["app"]

app = typer.Typer()


class StageChoice(StrEnum):
    """The stages retraining can be limited to."""

    stage1 = "stage1"
    stage2 = "stage2"


def _config(ctx: typer.Context) -> str | None:
    state = ctx.find_root().obj
    return str(state.config_file) if isinstance(state, AppState) and state.config_file else None


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


@app.command("retrain")
def retrain(
    ctx: typer.Context,
    stage: Annotated[
        list[StageChoice] | None, typer.Option("--stage", help="Only this stage (repeat for both; default both).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even when data and code are unchanged.")] = False,
) -> None:
    """Retrain now: train challengers, gate them against the champions, record runs and decisions."""
    stages = [s.value for s in stage] if stage else ["stage1", "stage2"]
    with open_database(ctx):  # a missing or unmigrated database is reported before any training
        pass
    state = retrain_flow(config=_config(ctx), stages=stages, force=force, return_state=True)
    table = Table(title="retraining")
    for column in ("stage", "run", "status", "decision", "model", "new F1", "champion F1"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    with open_database(ctx) as database, database.session() as session:
        for name in stages:
            run = queries.last_training_run(session, ModelStage(name))
            if run is None:
                continue
            champion = (run.metrics or {}).get("champion") or {}
            table.add_row(
                name,
                str(run.id),
                run.status.value,
                run.decision.value if run.decision else "-",
                str(run.model_version_id or "-"),
                _fmt(((run.metrics or {}).get("challenger") or {}).get("macro_f1")),
                _fmt(champion.get("macro_f1")),
                run.reason or run.error or "-",
            )
    console.print(table)
    if state.is_failed():
        err_console.print(f"[bold red]error:[/] {state.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Re-evaluate the champions now, record the metrics and check the recent slides for drift."""
    with open_database(ctx):
        pass
    result = validate_flow(config=_config(ctx))
    if not result["recorded"]:
        console.print(result["reason"])
        return
    table = Table(title=f"validation run {result['validation_run_id']}")
    table.add_column("dataset")
    table.add_column("macro-F1", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, _fmt(value))
    console.print(table)
    for note in result["notes"]:
        console.print(f"note: {note}", soft_wrap=True)
    if result["drift_flagged"]:
        err_console.print(f"[bold yellow]drift:[/] {result['drift_reason']}", highlight=False, soft_wrap=True)
    else:
        console.print(f"drift: {result['drift_reason']}", highlight=False, soft_wrap=True)
