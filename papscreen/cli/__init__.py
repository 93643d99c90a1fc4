"""The ``papscreen`` command line (Typer).

Each command group lives in its own module; this module builds the settings once per invocation
(``--config FILE`` and ``PAPSCREEN_*`` variables) and hands them to the command through Typer's context.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from papscreen.cli import (
    analyze_cmd,
    analyze_image_cmd,
    calibrate_cmd,
    config_cmd,
    dashboard_cmd,
    dataset_cmd,
    db_cmd,
    demo_cmd,
    evaluate_cmd,
    legacy_cmd,
    models_cmd,
    report_cmd,
    retrain_cmd,
    service_cmd,
    synth_cmd,
    train_cmd,
    train_real_cmd,
    users_cmd,
)
from papscreen.cli.common import AppState, err_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="papscreen",
    help="Cervical cytology screening: find, grade and rank cells on Pap smear scans.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (default: $PAPSCREEN_CONFIG, if set).", exists=False),
    ] = None,
) -> None:
    """Read settings lazily: commands that need none (``--help``) never touch the disk."""
    ctx.obj = AppState(config_file=config)


app.add_typer(config_cmd.app)
app.add_typer(db_cmd.app, name="db")
app.add_typer(dataset_cmd.app, name="dataset")
app.add_typer(synth_cmd.app)
app.add_typer(demo_cmd.app)
# `models calibrate-int8` lives in its own module (it needs the dataset and quantization code, not the registry).
models_cmd.app.command("calibrate-int8")(calibrate_cmd.calibrate_int8)
app.add_typer(models_cmd.app, name="models")
# `train real` (both stages on real annotated fields) lives in its own module, beside the per-stage commands.
train_cmd.app.command("real")(train_real_cmd.train_real)
app.add_typer(train_cmd.app, name="train")
app.add_typer(evaluate_cmd.app)
app.add_typer(analyze_cmd.app)
app.add_typer(analyze_image_cmd.app)
app.add_typer(legacy_cmd.app)
app.add_typer(retrain_cmd.app)
app.add_typer(report_cmd.app)
app.add_typer(dashboard_cmd.app)
app.add_typer(service_cmd.app)
app.add_typer(users_cmd.app, name="users")


EPHEMERAL_SERVER_WAIT_S = "180"
"""How long a one-shot command waits for its temporary Prefect server (Prefect's default, 20 s, is too short on
a busy 2-core machine). Only a default: an operator's ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` wins."""

_EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_SERVER_WAIT_S)
    try:
        app()
    except RuntimeError as e:
        if _EPHEMERAL_TIMEOUT not in str(e):
            raise
        timeout = os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]
        err_console.print(
            f"[bold red]error:[/] the temporary Prefect server did not start within {timeout} s (is the machine "
            "very busy?). Try again, raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run `papscreen up` "
            "so that commands use its server.",
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(2) from e
