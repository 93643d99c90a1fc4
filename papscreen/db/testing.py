"""Throw-away databases for doctests and quick experiments (tests use real files and PostgreSQL)."""

from __future__ import annotations

from papscreen.db import migrate
from papscreen.db.database import Database

__all__ = ["memory_database"]


def memory_database() -> Database:
    """An in-memory SQLite database migrated to the newest schema.

    Every session shares the one connection SQLite keeps for ``sqlite://`` (a static pool), so what one
    session commits the next one sees.
    """
    database = Database("sqlite://")
    migrate.upgrade(database)
    return database
