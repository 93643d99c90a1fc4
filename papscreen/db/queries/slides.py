"""Slides: claiming a scan exactly once, and moving it through its statuses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from papscreen.db.queries.audit import record_event
from papscreen.db.schema import Slide, SlideStatus, utcnow

__all__ = [
    "Claim",
    "InvalidTransitionError",
    "claim_scan",
    "fail_slide",
    "find_first_arrival",
    "get_slide",
    "list_slides",
    "mark_stored",
    "quarantine_slide",
    "start_processing",
    "status_counts",
]

# Which status may follow which. A failed slide may be queued again (retry after a fix);
# a quarantined one too (the dashboard's retry action); done may be re-queued for re-scoring.
ALLOWED_TRANSITIONS: dict[SlideStatus, frozenset[SlideStatus]] = {
    SlideStatus.QUEUED: frozenset({SlideStatus.PROCESSING, SlideStatus.QUARANTINED, SlideStatus.FAILED}),
    SlideStatus.PROCESSING: frozenset(
        {SlideStatus.DONE, SlideStatus.FAILED, SlideStatus.QUARANTINED, SlideStatus.QUEUED}
    ),
    SlideStatus.DONE: frozenset({SlideStatus.QUEUED, SlideStatus.PROCESSING}),
    SlideStatus.FAILED: frozenset({SlideStatus.QUEUED, SlideStatus.PROCESSING, SlideStatus.QUARANTINED}),
    SlideStatus.QUARANTINED: frozenset({SlideStatus.QUEUED}),
    SlideStatus.DUPLICATE: frozenset(),
}


class InvalidTransitionError(RuntimeError):
    """A status change that the slide's life does not allow (a bug in the caller, not bad input)."""


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a scan: the new row, and the first arrival when it is a duplicate."""

    slide: Slide
    duplicate_of: Slide | None

    @property
    def is_duplicate(self) -> bool:
        """True when the same content arrived before (under any name)."""
        return self.duplicate_of is not None


def find_first_arrival(session: Session, sha256: str) -> Slide | None:
    """The slide that owns this content, if any."""
    return session.scalars(select(Slide).where(Slide.sha256 == sha256, Slide.duplicate_of_id.is_(None))).first()


def claim_scan(
    session: Session,
    *,
    sha256: str,
    original_name: str,
    size_bytes: int,
    original_path: str | None = None,
) -> Claim:
    """Claim a scan's content; the database's unique index decides races between concurrent intakes.

    The first claim of a sha256 gets a ``queued`` slide. Any later claim of the same content, under any
    name, gets a ``duplicate`` slide pointing at the first, and is never analysed.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> db = memory_database()
        >>> with db.session() as s:
        ...     first = claim_scan(s, sha256="ab" * 32, original_name="a.jpg", size_bytes=10)
        ...     again = claim_scan(s, sha256="ab" * 32, original_name="copy of a.jpg", size_bytes=10)
        ...     (first.is_duplicate, again.is_duplicate, again.slide.status.value)
        (False, True, 'duplicate')
    """
    slide = Slide(
        sha256=sha256,
        original_name=original_name,
        original_path=original_path,
        size_bytes=size_bytes,
        status=SlideStatus.QUEUED,
    )
    try:
        with session.begin_nested():
            session.add(slide)
    except IntegrityError:
        original = find_first_arrival(session, sha256)
        if original is None:  # the conflicting row vanished; cannot happen without deletes
            raise
        duplicate = Slide(
            sha256=sha256,
            original_name=original_name,
            original_path=original_path,
            size_bytes=size_bytes,
            status=SlideStatus.DUPLICATE,
            duplicate_of_id=original.id,
            error=(
                f"same content as slide {original.id} ({original.original_name}), "
                f"received {original.received_at:%Y-%m-%d %H:%M} UTC"
            ),
        )
        session.add(duplicate)
        session.flush()
        return Claim(slide=duplicate, duplicate_of=original)
    return Claim(slide=slide, duplicate_of=None)


def get_slide(session: Session, slide_id: int) -> Slide | None:
    """One slide by id."""
    return session.get(Slide, slide_id)


def move_status(slide: Slide, to: SlideStatus) -> None:
    """Change a slide's status, refusing a change its life does not allow."""
    if to not in ALLOWED_TRANSITIONS[slide.status]:
        raise InvalidTransitionError(f"slide {slide.id} cannot go from {slide.status.value} to {to.value}")
    slide.status = to
    slide.updated_at = utcnow()


def require_slide(session: Session, slide_id: int) -> Slide:
    """The slide, or a LookupError naming the id."""
    slide = session.get(Slide, slide_id)
    if slide is None:
        raise LookupError(f"no slide with id {slide_id}")
    return slide


def mark_stored(
    session: Session,
    slide_id: int,
    *,
    stored_path: str,
    format: str | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Slide:
    """Record where the intake put the scan and what it is."""
    slide = require_slide(session, slide_id)
    slide.stored_path = stored_path
    slide.format = format
    slide.width = width
    slide.height = height
    slide.updated_at = utcnow()
    return slide


def start_processing(session: Session, slide_id: int, *, flow_run_id: str | None = None) -> Slide:
    """Move a queued slide (or a failed one, or a done one being re-scored) to processing."""
    slide = require_slide(session, slide_id)
    move_status(slide, SlideStatus.PROCESSING)
    slide.started_at = utcnow()
    slide.finished_at = None
    slide.error = None
    slide.flow_run_id = flow_run_id
    return slide


def fail_slide(session: Session, slide_id: int, error: str) -> Slide:
    """-> failed, keeping the error for people to read."""
    slide = require_slide(session, slide_id)
    move_status(slide, SlideStatus.FAILED)
    slide.error = error
    slide.finished_at = utcnow()
    return slide


def quarantine_slide(session: Session, slide_id: int, *, reason: str, quarantined_path: str | None) -> Slide:
    """-> quarantined, with the reason and where the file now lies; audited."""
    slide = require_slide(session, slide_id)
    move_status(slide, SlideStatus.QUARANTINED)
    slide.error = reason
    slide.stored_path = quarantined_path
    slide.finished_at = utcnow()
    record_event(session, "slide.quarantined", "slide", slide.id, details={"reason": reason, "path": quarantined_path})
    return slide


def list_slides(
    session: Session,
    *,
    statuses: Sequence[SlideStatus] | None = None,
    limit: int = 200,
) -> Sequence[Slide]:
    """Slides, newest first, optionally only some statuses."""
    query = select(Slide).order_by(Slide.received_at.desc(), Slide.id.desc()).limit(limit)
    if statuses:
        query = query.where(Slide.status.in_(list(statuses)))
    return session.scalars(query).all()


def status_counts(session: Session) -> dict[SlideStatus, int]:
    """How many slides are in each status (every status present, zero when none)."""
    rows = session.execute(select(Slide.status, func.count()).group_by(Slide.status)).all()
    counts = dict.fromkeys(SlideStatus, 0)
    counts.update(dict(rows))
    return counts
