"""What every flow and task shares: the settings and database of a run, and who is running it.

A flow is an entry point: it builds the settings once (:func:`papscreen.config.load_settings`, from its
``config`` parameter and ``PAPSCREEN_*`` variables), opens one :class:`~papscreen.db.database.Database`, and
passes both down to its tasks. Nothing here keeps global state except the caller's own objects.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.runtime import flow_run

from papscreen.config import Settings, load_settings
from papscreen.db.database import Database

__all__ = ["current_flow_run_id", "open_run", "worker_identity"]


def current_flow_run_id() -> str | None:
    """The id of the Prefect flow run this code runs in, or ``None`` outside one."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def worker_identity() -> str:
    """``host:pid`` of this process: written into a slide's lease so a dead owner can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def open_run(config: str | None) -> Iterator[tuple[Settings, Database]]:
    """The settings and database of one flow run; the database's connections are closed at the end."""
    settings = load_settings(config)
    database = Database(settings.database_url)
    try:
        yield settings, database
    finally:
        database.dispose()
