"""``papscreen config``: show the effective settings."""

from __future__ import annotations

import json

import typer

from papscreen.cli.common import console, settings_from

app = typer.Typer()


@app.command("config")
def show_config(ctx: typer.Context) -> None:
    """Print the effective settings as JSON, with the database password masked."""
    settings = settings_from(ctx)
    console.print_json(json.dumps(settings.masked()))
