"""What every command shares: the settings, the console, and how errors end a command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import OperationalError

from papscreen.config import Settings, load_settings
from papscreen.db import migrate
from papscreen.db.database import Database
from papscreen.errors import PapscreenError

__all__ = [
    "AppState",
    "console",
    "database_from",
    "err_console",
    "fail_cleanly",
    "open_database",
    "optional_database",
    "progress_bar",
    "settings_from",
]

console = Console()
err_console = Console(stderr=True)


@dataclass
class AppState:
    """Per-invocation state carried on ``typer.Context.obj``; settings are built on first use."""

    config_file: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """The settings of this invocation, built once."""
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings


def settings_from(ctx: typer.Context) -> Settings:
    """The invocation's settings; a bad settings file ends the command with its message."""
    state = ctx.find_root().obj
    if not isinstance(state, AppState):  # a command invoked without the root callback (tests)
        state = AppState()
        ctx.find_root().obj = state
    with fail_cleanly():
        return state.settings()


@contextmanager
def fail_cleanly(exit_code: int = 2) -> Iterator[None]:
    """Turn a papscreen error into a one-line message and an exit code, never a traceback."""
    try:
        yield
    except PapscreenError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code) from e


def database_from(ctx: typer.Context) -> Database:
    """A database handle for the invocation's settings (the caller disposes of it)."""
    return Database(settings_from(ctx).database_url)


@contextmanager
def open_database(ctx: typer.Context) -> Iterator[Database]:
    """The invocation's database, checked to be reachable and migrated; disposed of afterwards."""
    database = database_from(ctx)
    try:
        try:
            revision, head = migrate.current_revision(database), migrate.head_revision(database)
        except OperationalError as e:
            err_console.print(f"[bold red]error:[/] cannot reach the database: {e.orig}", soft_wrap=True)
            raise typer.Exit(2) from e
        if revision != head:
            err_console.print(
                f"[bold red]error:[/] the database {database!r} is at schema {revision or 'empty'}, "
                f"this papscreen needs {head}: run `papscreen db upgrade`",
                soft_wrap=True,
            )
            raise typer.Exit(2)
        yield database
    finally:
        database.dispose()


@contextmanager
def optional_database(ctx: typer.Context, wanted: bool) -> Iterator[Database | None]:
    """The checked database when ``wanted`` (e.g. to register a model), else ``None``.

    Entered *before* long work, so a missing or unmigrated database is reported before minutes of training.
    """
    if not wanted:
        yield None
        return
    with open_database(ctx) as database:
        yield database


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar on stderr, one line per phase, shown from the first report on.

    Yields ``progress(phase, done, total)``.

    Started lazily so a command that fails before any progress prints only its error line.
    """
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console
    )
    tasks: dict[str, TaskID] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    try:
        yield progress
    finally:
        if tasks:
            bar.stop()
