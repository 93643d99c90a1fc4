"""The service commands: ``papscreen intake --once``, ``papscreen rescore --since DATE``, ``papscreen up``.

``up`` runs the whole service on one machine: a local Prefect server (its own SQLite under
``PAPSCREEN_HOME/prefect``) unless ``PREFECT_API_URL`` names one, every deployment served from this process,
and the dashboard. Ctrl-C (or SIGTERM) stops all of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from prefect.settings import PREFECT_API_URL, temporary_settings
from rich.table import Table

from papscreen.cli.common import console, err_console, fail_cleanly, settings_from
from papscreen.config import Settings
from papscreen.dashboard.launch import start_dashboard, stop_process
from papscreen.db import migrate
from papscreen.db.database import Database
from papscreen.errors import CheckpointError
from papscreen.flows.deployments import serve_all, start_watcher
from papscreen.flows.intake import intake_flow
from papscreen.flows.rescore import rescore_flow
from papscreen.tasks.registry import register_shipped_models

__all__ = ["PrefectServer", "app", "install_default_models", "local_prefect_server", "prepare_database", "run_service"]

app = typer.Typer()

SERVER_START_TIMEOUT_S = 180.0


def prepare_database(settings: Settings) -> str:
    """Migrate the configured database to the newest schema; returns a line saying what changed."""
    database = Database(settings.database_url)
    try:
        before = migrate.current_revision(database)
        migrate.upgrade(database)
        return f"{database!r}: schema {before or 'empty'} -> {migrate.current_revision(database)}"
    finally:
        database.dispose()


def install_default_models(settings: Settings) -> str:
    """Register papscreen's shipped models as champions of the stages that have none; a line saying what."""
    database = Database(settings.database_url)
    try:
        outcome = register_shipped_models(database, settings.models_dir)  # type: ignore[arg-type]
    except CheckpointError as e:  # a trimmed installation: the service still runs, slides wait for champions
        return f"shipped models not installed ({e}); slides wait until both stages have a champion"
    finally:
        database.dispose()
    return "; ".join(f"{stage.value}: {line}" for stage, line in outcome.items())


def _config_arg(ctx: typer.Context) -> str | None:
    state = ctx.find_root().obj
    path = getattr(state, "config_file", None)
    return str(path) if path else None


def _outcome_table(report: dict[str, Any]) -> Table:
    table = Table(title="intake pass")
    for column in ("file", "outcome", "slide", "detail"):
        table.add_column(column)
    for o in report["outcomes"]:
        table.add_row(o["name"], o["status"], str(o["slide_id"] or "-"), o["detail"])
    for path in report["still_writing"]:
        table.add_row(path, "still being written", "-", "taken when it has settled")
    for name in report.get("retry_later", []):
        table.add_row(name, "waiting to be retried", "-", "failed for a cause that may pass; see the intake page")
    for a in report["analyses"]:
        table.add_row(f"slide {a.get('slide_id')}", f"analysis {a.get('status', 'started')}", "", _analysis_detail(a))
    return table


def _analysis_detail(analysis: dict[str, Any]) -> str:
    if analysis.get("status") == "done":
        return f"{analysis['cells']} cells, {analysis['category']}"
    return str(analysis.get("reason") or analysis.get("flow_run_id") or "")


@app.command("intake")
def intake_command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="One pass in the foreground, analyses included.")] = False,
    no_analyze: Annotated[bool, typer.Option("--no-analyze", help="Ingest only; analyse later.")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Watch the intake folder until stopped, starting a run of the intake deployment whenever there is "
            "work (for deployments served by workers, as in docker-compose.yml; `papscreen up` watches on its own).",
        ),
    ] = False,
) -> None:
    """Ingest new scans from the intake folder (``--once``: one pass now; ``--watch``: start passes on need)."""
    if watch:
        settings = settings_from(ctx)
        _watch(settings, _config_arg(ctx))
        return
    if not once:
        err_console.print(
            "the service watches the intake on its own (`papscreen up`); use --once for one pass now, or --watch"
        )
        raise typer.Exit(2)
    settings_from(ctx)  # a bad settings file ends here with one line
    with fail_cleanly():
        report = intake_flow(config=_config_arg(ctx), analyze=not no_analyze, dispatch="inline")
    console.print(_outcome_table(report))


def _watch(settings: Settings, config: str | None) -> None:
    """Run the intake watcher in the foreground until Ctrl-C or SIGTERM."""
    console.print(
        f"watching {settings.intake_dir} every {settings.schedules.intake_interval_seconds} s; "
        "an intake run starts only when there is work. Ctrl-C stops."
    )
    stop = threading.Event()
    with _stop_on_sigterm():
        watcher = start_watcher(settings, config, stop)
        try:
            while watcher.is_alive():
                watcher.join(timeout=1.0)
        except KeyboardInterrupt:
            console.print("stopping...")
        finally:
            stop.set()


@app.command("rescore")
def rescore_command(
    ctx: typer.Context,
    since: Annotated[datetime, typer.Option("--since", help="Slides received since this date (UTC), e.g. 2026-11-01.")],
) -> None:
    """Analyse again, with the current champions, the slides since a date that older models scored."""
    settings_from(ctx)
    when = since if since.tzinfo else since.replace(tzinfo=UTC)
    with fail_cleanly():
        report = rescore_flow(since=when, config=_config_arg(ctx), dispatch="inline")
    console.print(f"queued again: {len(report['requeued'])} slides; analyses: {len(report['analyses'])}")
    for analysis in report["analyses"]:
        console.print(f"  slide {analysis.get('slide_id')}: {analysis.get('status')} {_analysis_detail(analysis)}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class PrefectServer:
    """The Prefect API the service uses, and the local server process behind it when ``up`` started one."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def wait_ready(self) -> str:
        """Wait until the API answers (a started server takes seconds); returns its URL."""
        if self.process is None:
            return self.url
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited (code {self.process.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Prefect server did not answer at {self.url} within {SERVER_START_TIMEOUT_S:.0f} s; "
                    f"see {self.log_path}"
                )
            time.sleep(0.5)  # polling a server's health while it starts, not synchronising test steps
        return self.url


@contextmanager
def local_prefect_server(settings: Settings) -> Iterator[PrefectServer]:
    """The Prefect API to use: ``PREFECT_API_URL`` when set, else a local server started (and stopped) here.

    The server is started, not awaited: ``demo`` prepares data and models meanwhile, then calls ``wait_ready``.
    """
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield PrefectServer(configured)
        return
    port = settings.orchestration.prefect_port
    url = f"http://127.0.0.1:{port}/api"
    prefect_home = settings.home / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_API_URL": url,
    }
    log_path = prefect_home / "server.log"
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield PrefectServer(url, server, log_path)
    finally:
        stop_process(server)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM ends ``up`` like Ctrl-C does (a container's stop, systemd)."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_service(
    settings: Settings, config: str | None, *, dashboard: bool = True, server: PrefectServer | None = None
) -> None:
    """Everything `up` runs, until Ctrl-C or SIGTERM: server (if needed), dashboard, every deployment.

    ``server``: one already started (by ``demo``, so it warmed up while data and models were prepared).
    """
    settings.ensure_folders()
    console.print(prepare_database(settings))
    console.print(f"models: {install_default_models(settings)}")
    with _stop_on_sigterm(), ExitStack() as stack:
        if server is None:
            server = stack.enter_context(local_prefect_server(settings))
        api_url = server.wait_ready()
        os.environ["PREFECT_API_URL"] = api_url  # flow runs start as child processes; they read it
        ui = api_url.removesuffix("/api")
        board = start_dashboard(settings) if dashboard else None
        console.print(f"Prefect UI: {ui}")
        if board is not None:
            console.print(f"dashboard:  http://127.0.0.1:{settings.orchestration.dashboard_port}")
        console.print(
            f"intake:     {settings.intake_dir} (watched every {settings.schedules.intake_interval_seconds} s; "
            "a run starts only when there is work)"
        )
        console.print("Ctrl-C stops everything.")
        try:
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                serve_all(settings, config)
        except KeyboardInterrupt:
            console.print("stopping...")
        finally:
            if board is not None:
                with suppress(Exception):
                    stop_process(board)


@app.command("up")
def up_command(
    ctx: typer.Context,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Serve the flows only.")] = False,
) -> None:
    """Run the whole service here: Prefect server (unless PREFECT_API_URL is set), all flows, the dashboard."""
    settings = settings_from(ctx)
    with fail_cleanly():
        run_service(settings, _config_arg(ctx), dashboard=not no_dashboard)
