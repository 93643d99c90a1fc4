"""``papscreen db ...``: create and migrate the database (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.exc import OperationalError

from papscreen.cli.common import console, database_from, err_console
from papscreen.db import migrate

app = typer.Typer(no_args_is_help=True, help="Create, migrate and check the database.")


def _unreachable(e: OperationalError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] cannot reach the database: {e.orig}", highlight=False, soft_wrap=True)
    err_console.print("Check PAPSCREEN_DATABASE_URL (see `papscreen config`) and that the server is running.")
    return typer.Exit(2)


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create the schema in an empty database, or bring an existing one up to date (safe to repeat)."""
    database = database_from(ctx)
    try:
        before = migrate.current_revision(database)
        migrate.upgrade(database, revision)
        after = migrate.current_revision(database)
    except OperationalError as e:
        raise _unreachable(e) from e
    finally:
        database.dispose()
    console.print(f"{database!r}: schema {before or 'empty'} -> {after}")


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' removes every papscreen table.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: a downgrade can drop data.")] = False,
) -> None:
    """Take the schema back to an older revision (drops what later revisions added)."""
    if not yes:
        err_console.print("A downgrade can drop tables and data; repeat with --yes to go ahead.")
        raise typer.Exit(2)
    database = database_from(ctx)
    try:
        migrate.downgrade(database, revision)
        console.print(f"{database!r}: schema now {migrate.current_revision(database) or 'empty'}")
    except OperationalError as e:
        raise _unreachable(e) from e
    finally:
        database.dispose()


@app.command()
def current(ctx: typer.Context) -> None:
    """Show the database's schema revision and the newest one this papscreen ships."""
    database = database_from(ctx)
    try:
        revision, head = migrate.current_revision(database), migrate.head_revision(database)
    except OperationalError as e:
        raise _unreachable(e) from e
    finally:
        database.dispose()
    state = "up to date" if revision == head else "needs `papscreen db upgrade`"
    console.print(f"{database!r}: at {revision or 'empty'}, newest {head} ({state})")


@app.command()
def check(ctx: typer.Context) -> None:
    """Fail if the code's schema has changes that no migration covers (Alembic's `check`)."""
    database = database_from(ctx)
    try:
        if migrate.current_revision(database) != migrate.head_revision(database):
            err_console.print("The database is not at the newest revision; run `papscreen db upgrade` first.")
            raise typer.Exit(2)
        migrate.check(database)
    except migrate.SchemaDriftError as e:
        err_console.print(f"[bold red]schema drift:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    except OperationalError as e:
        raise _unreachable(e) from e
    finally:
        database.dispose()
    console.print("No schema drift: the migrations match the code.")
