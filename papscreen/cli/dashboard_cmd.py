"""``papscreen dashboard``: serve the Streamlit dashboard in the foreground until Ctrl-C."""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer

from papscreen.cli.common import AppState, console, settings_from
from papscreen.config import CONFIG_FILE_ENV
from papscreen.dashboard.launch import start_dashboard, stop_process

app = typer.Typer()


@app.command("dashboard")
def dashboard(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Port to serve on (default: orchestration.dashboard_port)."),
    ] = None,
) -> None:
    """Serve the dashboard until Ctrl-C (or SIGTERM, e.g. `docker stop`), then stop Streamlit cleanly."""
    settings = settings_from(ctx)
    chosen = settings.orchestration.dashboard_port if port is None else port
    env = dict(os.environ)
    state = ctx.find_root().obj
    if isinstance(state, AppState) and state.config_file is not None:  # the app reads the same settings file
        env[CONFIG_FILE_ENV] = str(state.config_file.expanduser().resolve())
    # SIGTERM ends the command like Ctrl-C does, so the Streamlit process group never outlives it (a container's
    # PID 1 would otherwise ignore SIGTERM altogether).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    process = start_dashboard(settings, chosen, env)
    console.print(f"dashboard: http://localhost:{chosen} (Ctrl-C stops it)", highlight=False)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        stop_process(process)
        console.print("dashboard stopped")
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0:
        console.print(f"[bold red]error:[/] the dashboard (Streamlit) exited with code {code}")
        raise typer.Exit(code)
