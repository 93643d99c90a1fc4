"""The intake page's Retry action: check a quarantined scan again and, if it reads now, queue it for analysis.

A scan is quarantined for a reason that may have gone away: a size limit raised, a reader installed, a file
re-exported under the same name. Retrying re-checks the quarantined file with the same probe the intake uses
(:func:`papscreen.intake.probe_scan`, with today's limits). When it now reads, the file moves into the store at
the path the intake would have given it (never overwriting anything), and one transaction records the stored
path and queues the slide, audited under the user who clicked, so the next intake pass analyses it. When it
still does not read, nothing moves and the new reason is returned. Nothing is ever deleted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import SlideStatus
from papscreen.errors import ImageError, PapscreenError
from papscreen.intake import destination, move_file, probe_scan

__all__ = ["RetryError", "RetryResult", "retry_quarantined"]


class RetryError(PapscreenError):
    """The retry cannot be attempted (not quarantined, file gone, destination taken); the message says why."""


@dataclass(frozen=True)
class RetryResult:
    """What a retry did, for the page to show.

    Attributes:
        slide_id: the slide retried.
        queued: True when the scan read, moved into the store and was queued for analysis.
        message: a sentence for the person who clicked.
        stored_path: where the file now lies in the store (``None`` when it stayed in quarantine).
    """

    slide_id: int
    queued: bool
    message: str
    stored_path: str | None = None


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (not following a final symlink) lies inside ``folder``."""
    try:
        Path(os.path.realpath(path.parent)).joinpath(path.name).relative_to(Path(os.path.realpath(folder)))
    except ValueError:
        return False
    return True


def retry_quarantined(settings: Settings, database: Database, slide_id: int, *, user: str) -> RetryResult:
    """Check a quarantined slide's file again; queue it when it reads now, else return the new reason.

    Args:
        settings: today's settings (their ``limits`` decide, and ``store_dir`` is where the file goes).
        database: where the slide is.
        slide_id: the quarantined slide.
        user: who asked (the audit log and the requeue reason name them).

    Raises:
        RetryError: the slide is not quarantined, its file is not in the quarantine folder or is gone, or the
            store already holds a file at its destination.

    Examples:
        >>> import tempfile
        >>> from papscreen.db.testing import memory_database
        >>> retry_quarantined(Settings(home=tempfile.mkdtemp()), memory_database(), 1, user="ann")
        Traceback (most recent call last):
        ...
        papscreen.dashboard.retry.RetryError: there is no slide 1
    """
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        if slide is None:
            raise RetryError(f"there is no slide {slide_id}")
        status, stored, name, received = slide.status, slide.stored_path, slide.original_name, slide.received_at
    if status != SlideStatus.QUARANTINED:
        raise RetryError(f"slide {slide_id} is {status.value}, not quarantined: there is nothing to retry")
    quarantine_dir = Path(settings.quarantine_dir)  # type: ignore[arg-type]
    if not stored or not _inside(Path(stored), quarantine_dir):
        raise RetryError(
            f"slide {slide_id}'s file is not in the quarantine folder {quarantine_dir} (recorded: {stored or 'none'});"
            " put the scan in the intake folder again instead"
        )
    path = Path(stored)
    if path.is_symlink():
        return RetryResult(slide_id, False, f"still refused: {path.name} is a symbolic link, which is never read")
    if not path.is_file():
        raise RetryError(f"slide {slide_id}'s quarantined file {path} is gone; put the scan in the intake folder again")
    try:
        info = probe_scan(path, settings.limits)
    except ImageError as e:
        return RetryResult(slide_id, False, f"still unreadable, left in quarantine: {e.reason}")
    target = destination(settings.store_dir, slide_id, name, received)  # type: ignore[arg-type]
    try:
        moved = move_file(path, target)
    except FileExistsError as e:
        raise RetryError(f"the store already holds {target}; nothing was moved (move that file away first)") from e
    except FileNotFoundError as e:  # someone else retried it a moment ago
        raise RetryError(f"slide {slide_id}'s quarantined file {path} vanished meanwhile; reload the page") from e
    try:
        with database.session() as session:
            queries.mark_stored(
                session, slide_id, stored_path=str(moved), format=info.format, width=info.width, height=info.height
            )
            queries.requeue_slide(session, slide_id, reason=f"retried from the dashboard by {user}", actor=user)
    except queries.InvalidTransitionError as e:  # another session moved the slide on meanwhile
        move_file(moved, path)  # the database still names the quarantined file: put it back there
        raise RetryError(f"slide {slide_id} changed meanwhile ({e}); the file was put back; reload the page") from e
    except Exception:
        move_file(moved, path)
        raise
    return RetryResult(
        slide_id,
        True,
        f"slide {slide_id} ({name}) reads now ({info.format} {info.width}x{info.height}): moved to the store and "
        "queued; the next intake pass analyses it",
        str(moved),
    )
