"""What the placeholder dashboard shows, as plain data: slide counts, the newest slides, the champions.

Kept apart from ``app.py`` so the facts are testable without Streamlit, and so the page itself only lays them
out. Every read goes through :mod:`papscreen.db.queries`; the schema check uses :mod:`papscreen.db.migrate`,
as the command line's ``open_database`` does, so an unmigrated database gives one instruction, not a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError, ProgrammingError

from papscreen.db import migrate, queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage, Slide
from papscreen.errors import PapscreenError

__all__ = [
    "RECENT_SLIDES",
    "DatabaseNotReadyError",
    "Overview",
    "champions",
    "check_database",
    "load_overview",
    "recent_slides",
    "slide_counts",
]

RECENT_SLIDES = 20


class DatabaseNotReadyError(PapscreenError):
    """The database cannot be reached or is not at papscreen's schema; the message says what to run."""


@dataclass(frozen=True)
class Overview:
    """Everything the placeholder page shows, read in one go."""

    counts: dict[str, int]
    recent: list[dict[str, Any]]
    champions: dict[str, str | None]

    @property
    def total(self) -> int:
        """Slides of every status together."""
        return sum(self.counts.values())


def check_database(database: Database) -> None:
    """Raise :class:`DatabaseNotReadyError` unless the database is reachable and at the newest schema.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> check_database(memory_database())
        >>> check_database(Database("sqlite://"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        papscreen.dashboard.placeholder.DatabaseNotReadyError: the database ... run `papscreen db upgrade`
    """
    try:
        revision, head = migrate.current_revision(database), migrate.head_revision(database)
    except OperationalError as e:
        raise DatabaseNotReadyError(
            f"cannot reach the database {database!r}: {e.orig}. Check PAPSCREEN_DATABASE_URL and that the "
            "server runs, then run `papscreen db upgrade`"
        ) from e
    if revision != head:
        raise DatabaseNotReadyError(
            f"the database {database!r} is at schema {revision or 'empty'}, this papscreen needs {head}: "
            "run `papscreen db upgrade`"
        )


def slide_counts(database: Database) -> dict[str, int]:
    """Slides per status (every status present, zero when none), keyed by the status's name.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> slide_counts(memory_database())["queued"]
        0
    """
    with database.session() as session:
        return {status.value: count for status, count in queries.status_counts(session).items()}


def _row(slide: Slide) -> dict[str, Any]:
    received: datetime = slide.received_at
    return {
        "id": slide.id,
        "name": slide.original_name,
        "status": slide.status.value,
        "category": slide.category,
        "abnormal score": slide.abnormal_score,
        "received": received.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def recent_slides(database: Database, limit: int = RECENT_SLIDES) -> list[dict[str, Any]]:
    """The newest slides as table rows (id, name, status, category, abnormal score, received).

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> recent_slides(memory_database())
        []
    """
    with database.session() as session:
        return [_row(slide) for slide in queries.list_slides(session, limit=limit)]


def champions(database: Database) -> dict[str, str | None]:
    """Each stage's champion as one line (name, architecture, since when), or ``None`` when it has none.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> champions(memory_database())
        {'stage1': None, 'stage2': None}
    """
    found: dict[str, str | None] = {}
    with database.session() as session:
        for stage in ModelStage:
            model = queries.get_champion(session, stage)
            if model is None:
                found[stage.value] = None
                continue
            since = model.promoted_at or model.created_at
            found[stage.value] = f"{model.name} ({model.architecture}), champion since {since:%Y-%m-%d %H:%M} UTC"
    return found


def load_overview(database: Database, limit: int = RECENT_SLIDES) -> Overview:
    """Check the database, then read what the page shows.

    Raises:
        DatabaseNotReadyError: unreachable or unmigrated database (also when it disappears mid-read).
    """
    check_database(database)
    try:
        return Overview(
            counts=slide_counts(database), recent=recent_slides(database, limit), champions=champions(database)
        )
    except (OperationalError, ProgrammingError) as e:
        raise DatabaseNotReadyError(
            f"cannot read the database {database!r}: {e.orig}. Run `papscreen db upgrade`, then reload"
        ) from e
