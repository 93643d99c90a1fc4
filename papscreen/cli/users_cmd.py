"""``papscreen users add|remove|list``: who may sign in to the dashboard.

The users file (``dashboard.users_file``, by default ``HOME/users.toml``) holds bcrypt hashes only. Once it
exists, the dashboard shows nothing before sign-in and records every review under the signed-in name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from papscreen.cli.common import console, err_console, fail_cleanly, settings_from
from papscreen.dashboard.auth import (
    PasswordError,
    Role,
    UsersFileError,
    add_user,
    check_name,
    load_users,
    remove_user,
)

app = typer.Typer(no_args_is_help=True, help="Dashboard users: add, remove and list who may sign in.")


def _users_file(ctx: typer.Context) -> Path:
    """The users file of this invocation's settings (always set: the settings derive it from HOME)."""
    path = settings_from(ctx).dashboard.users_file
    if path is None:  # pragma: no cover - Settings fills it in; kept for type checkers
        raise typer.BadParameter("dashboard.users_file is not set")
    return path


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of standard input (scripts), or typed twice without echo."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise PasswordError("--password-stdin: standard input is empty; pipe the password in")
        return line.rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True)
    second = typer.prompt("Repeat the password", hide_input=True)
    if first != second:
        raise PasswordError("the two passwords differ; nothing was changed")
    return first


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Sign-in name (letters, digits, '.', '_', '@', '-').")],
    display_name: Annotated[
        str | None, typer.Option("--display-name", help="Name shown in the dashboard (default: NAME).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from one line of standard input.")
    ] = False,
    role: Annotated[
        Role | None,
        typer.Option(
            "--role",
            help="cytotechnologist (screens, signs out NILM), pathologist (signs out abnormal slides) or admin "
            "(models and settings; signs nothing). Default: cytotechnologist, or the user's role with --replace.",
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Change an existing user's password (and display name, role).")
    ] = False,
) -> None:
    """Add a user (or change one with --replace); creates the users file, readable by its owner only."""
    path = _users_file(ctx)
    with fail_cleanly():
        existed = path.exists()
        check_name(name)
        if existed and name in load_users(path) and not replace:  # say so before asking for a password
            raise UsersFileError(f"user {name!r} already exists in {path}: pass --replace to change their password")
        user = add_user(
            path, name, _read_password(password_stdin), display_name=display_name, role=role, replace=replace
        )
    console.print(
        f"user {user.name} ({user.display_name}, {user.role.value}) saved in {path}", highlight=False, soft_wrap=True
    )
    if not existed:
        console.print("the dashboard now asks everyone to sign in", highlight=False, soft_wrap=True)


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user to remove.")],
) -> None:
    """Remove a user; they are signed out of the dashboard at their next click."""
    path = _users_file(ctx)
    with fail_cleanly():
        left = remove_user(path, name)
    console.print(f"removed user {name} from {path}", highlight=False, soft_wrap=True)
    if not left:
        err_console.print(
            f"[bold yellow]warning:[/] no users left: the dashboard lets nobody in until you add one, "
            f"or delete {path} to run it without sign-in",
            highlight=False,
            soft_wrap=True,
        )


@app.command("list")
def list_users(ctx: typer.Context) -> None:
    """Every user who may sign in (names, display names and roles; never the hashes)."""
    path = _users_file(ctx)
    if not path.exists():
        console.print(
            f"no users file ({path}): the dashboard runs without sign-in; `papscreen users add NAME` adds one",
            highlight=False,
            soft_wrap=True,
        )
        return
    with fail_cleanly():
        users = load_users(path)
    if not users:
        console.print(f"{path} has no users: nobody can sign in to the dashboard", highlight=False, soft_wrap=True)
        return
    table = Table(title="dashboard users", caption=str(path))
    table.add_column("name")
    table.add_column("display name")
    table.add_column("role")
    for user in sorted(users.values(), key=lambda u: u.name):
        table.add_row(user.name, user.display_name, user.role.value)
    console.print(table)
