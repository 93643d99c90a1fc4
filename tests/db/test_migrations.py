"""Migrations create, check and remove the same schema on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.db import migrate
from papscreen.db.database import Database

TABLES = {"slides", "analyses", "cells", "model_versions", "training_runs", "audit_log"}


def test_upgrade_creates_schema_in_empty_database(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    try:
        assert migrate.current_revision(database) is None
        migrate.upgrade(database)
        assert migrate.current_revision(database) == migrate.head_revision(database)
        assert set(inspect(database.engine).get_table_names()) >= TABLES
    finally:
        database.dispose()


def test_upgrade_is_repeatable_and_check_finds_no_drift(database: Database) -> None:
    migrate.upgrade(database)
    migrate.check(database)


def test_downgrade_to_base_then_upgrade_again(database: Database) -> None:
    migrate.downgrade(database, "base")
    assert not TABLES & set(inspect(database.engine).get_table_names())
    migrate.upgrade(database)
    assert set(inspect(database.engine).get_table_names()) >= TABLES
    migrate.check(database)


def test_cli_db_upgrade_on_empty_database(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", empty_database_url)
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "empty -> " in result.output
    result = runner.invoke(app, ["db", "check"])
    assert result.exit_code == 0, result.output
    assert "No schema drift" in result.output
    result = runner.invoke(app, ["db", "current"])
    assert "up to date" in result.output


def test_cli_db_check_refuses_an_old_schema(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", empty_database_url)
    result = CliRunner().invoke(app, ["db", "check"])
    assert result.exit_code == 2
    assert "papscreen db upgrade" in result.output


def test_cli_unreachable_database_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "cannot reach the database" in result.output
    assert "Traceback" not in result.output


def test_cli_downgrade_needs_confirmation(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", database.url.render_as_string(hide_password=False))
    result = CliRunner().invoke(app, ["db", "downgrade", "base"])
    assert result.exit_code == 2
    assert set(inspect(database.engine).get_table_names()) >= TABLES
    result = CliRunner().invoke(app, ["db", "downgrade", "base", "--yes"])
    assert result.exit_code == 0, result.output
    assert not TABLES & set(inspect(database.engine).get_table_names())
