"""One handle on the database: engine, sessions and transactions, tuned per backend.

SQLite (the embedded default) gets WAL journaling so the dashboard can read while a flow writes, a busy
timeout so concurrent writers wait instead of failing, foreign keys switched on, and SQLAlchemy-emitted
``BEGIN`` so that savepoints work (pysqlite's own transaction handling breaks them). PostgreSQL gets
``pool_pre_ping`` so a restarted server costs a reconnect, not an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from papscreen.config import masked_url

__all__ = ["Database"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "papscreen_write"
"""Execution option that makes a SQLite transaction begin with the write lock (see :meth:`Database.session`)."""


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see module docstring)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """Engine plus session factory for one database URL; build once per process and pass it down.

    Examples:
        >>> db = Database("sqlite://")
        >>> with db.session() as session:
        ...     session.connection().exec_driver_sql("select 1").scalar()
        1
        >>> db.dispose()
    """

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self.url = make_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.url.get_backend_name() == "sqlite":
            if self.url.database not in (None, "", ":memory:"):
                Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.url.get_backend_name() == "sqlite":
            _configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.get_backend_name()

    def __repr__(self) -> str:
        return f"Database({masked_url(self.url)!r})"

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises.

        ``write=True`` for a transaction that reads and then writes while other processes write too: on SQLite
        it takes the write lock at the start (``BEGIN IMMEDIATE``), waiting for it up to the busy timeout,
        where a deferred transaction would fail at its first write with "database is locked" because its
        snapshot went stale. PostgreSQL needs nothing (row locks and the unique indexes decide).
        """
        with self._sessions.begin() as session:
            if write and self.backend == "sqlite":
                session.connection(execution_options={WRITE_OPTION: True})
            yield session

    def dispose(self) -> None:
        """Close every pooled connection (end of a process or test)."""
        self.engine.dispose()
