"""Slides: claiming a scan exactly once, and moving it through its statuses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from papscreen.db.queries.audit import record_event
from papscreen.db.schema import Slide, SlideStatus, utcnow

__all__ = [
    "Claim",
    "InvalidTransitionError",
    "StaleAnalysis",
    "begin_analysis",
    "claim_scan",
    "dispatchable_slides",
    "fail_slide",
    "find_first_arrival",
    "find_unfinished_claim",
    "get_slide",
    "list_slides",
    "mark_dispatched",
    "mark_stored",
    "quarantine_slide",
    "record_progress",
    "renew_lease",
    "requeue_slide",
    "requeue_stale",
    "set_compute_lease",
    "settle_gone_duplicate",
    "slide_names",
    "slides_to_rescore",
    "start_processing",
    "status_counts",
    "storable",
    "unstored_claims",
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


NAME_CHARS = 512
PATH_CHARS = 2048
"""Widths of ``slides.original_name`` and ``slides.original_path``; longer values are cut by :func:`storable`."""


def storable(text: str | None, max_chars: int) -> str | None:
    """``text`` as the database can keep it: valid UTF-8, at most ``max_chars`` characters, the same every time.

    A file name need not be UTF-8 (undecodable bytes become U+FFFD) and a nested name can outgrow the column; a
    long value keeps its start and its end (the extension), joined by ``...``. Being deterministic, a stored path
    still matches the same file's path on the next pass.

    Examples:
        >>> cut = storable("ward/" + "x" * 600 + ".tif", 512)
        >>> len(cut), cut[:7], cut[-8:]
        (512, 'ward/xx', 'xxxx.tif')
        >>> storable("ok.png", 512)
        'ok.png'
    """
    if text is None:
        return None
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if len(text) <= max_chars:
        return text
    tail = max(0, min(40, (max_chars - 3) // 2))
    return text[: max_chars - 3 - tail] + "..." + (text[-tail:] if tail else "")


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
    original_name = storable(original_name, NAME_CHARS)  # type: ignore[assignment]  # str in, str out
    original_path = storable(original_path, PATH_CHARS)
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
    slide.progress_fraction = None  # progress belongs to one running analysis
    slide.progress_note = None


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


def fail_slide(session: Session, slide_id: int, error: str, *, owner: str | None = None) -> Slide | None:
    """-> failed, keeping the error for people to read; the lease is released.

    ``owner``: an analysing worker failing its own analysis; nothing changes (``None``) when the slide is no
    longer processing under its lease (it was requeued and another worker may have it).
    """
    slide = require_slide(session, slide_id)
    if owner is not None and (slide.status != SlideStatus.PROCESSING or slide.lease_owner != owner):
        return None
    move_status(slide, SlideStatus.FAILED)
    slide.error = error
    slide.finished_at = utcnow()
    slide.lease_owner = None
    slide.lease_expires_at = None
    record_event(session, "slide.failed", "slide", slide.id, details={"error": error[:2000]})
    return slide


def quarantine_slide(session: Session, slide_id: int, *, reason: str, quarantined_path: str | None) -> Slide:
    """-> quarantined, with the reason and where the file now lies; audited."""
    slide = require_slide(session, slide_id)
    move_status(slide, SlideStatus.QUARANTINED)
    slide.error = reason
    slide.stored_path = quarantined_path
    slide.finished_at = utcnow()
    slide.lease_owner = None
    slide.lease_expires_at = None
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


def find_unfinished_claim(session: Session, sha256: str | None, original_path: str) -> Slide | None:
    """A claim of this content (any content when ``sha256`` is None) from this very path, never moved.

    A crash between claiming a scan and moving it leaves the file in the intake and a row (queued, or a
    duplicate) without a ``stored_path``; the next pass finds that row here and finishes the move instead of
    recording the file a second time.
    """
    query = select(Slide).where(
        Slide.original_path == storable(original_path, PATH_CHARS),
        Slide.stored_path.is_(None),
        Slide.status.in_([SlideStatus.QUEUED, SlideStatus.DUPLICATE]),
        Slide.finished_at.is_(None),
    )
    if sha256 is not None:
        query = query.where(Slide.sha256 == sha256)
    return session.scalars(query.order_by(Slide.id)).first()


def unstored_claims(session: Session) -> Sequence[Slide]:
    """Claims (queued or duplicate) whose file was never recorded as moved (an intake stopped in between).

    A duplicate whose file vanished before it reached the quarantine is settled (:func:`settle_gone_duplicate`)
    and no longer listed.
    """
    return session.scalars(
        select(Slide)
        .where(
            Slide.stored_path.is_(None),
            or_(
                Slide.status == SlideStatus.QUEUED,
                (Slide.status == SlideStatus.DUPLICATE) & Slide.finished_at.is_(None),
            ),
        )
        .order_by(Slide.id)
    ).all()


def settle_gone_duplicate(session: Session, slide_id: int, reason: str) -> Slide:
    """A duplicate claim whose file left the intake before it reached the quarantine: nothing to keep.

    The duplicate stays a duplicate (its content is the first arrival's, which is unaffected); the reason is
    recorded and audited, and the claim is settled so that recovery does not look at it again.
    """
    slide = require_slide(session, slide_id)
    if slide.status != SlideStatus.DUPLICATE:
        raise InvalidTransitionError(f"slide {slide_id} is {slide.status.value}, not a duplicate")
    slide.error = f"{slide.error}; {reason}" if slide.error else reason
    slide.finished_at = utcnow()
    slide.updated_at = slide.finished_at
    record_event(session, "slide.duplicate_gone", "slide", slide.id, details={"reason": reason})
    return slide


def dispatchable_slides(session: Session, *, now: datetime, redispatch_after_s: float, limit: int = 100) -> list[int]:
    """Queued, stored slides to start analyses for, oldest first.

    A slide handed to a deployment run is skipped until ``redispatch_after_s`` has passed without the run
    taking it (a run that never started is then replaced).
    """
    stale = now - timedelta(seconds=redispatch_after_s)
    query = (
        select(Slide.id)
        .where(
            Slide.status == SlideStatus.QUEUED,
            Slide.stored_path.is_not(None),
            or_(Slide.flow_run_id.is_(None), Slide.updated_at < stale),
        )
        .order_by(Slide.received_at, Slide.id)
        .limit(limit)
    )
    return list(session.scalars(query).all())


def slide_names(session: Session, slide_ids: Sequence[int]) -> dict[int, str]:
    """The original names of some slides, in one query."""
    if not slide_ids:
        return {}
    rows = session.execute(select(Slide.id, Slide.original_name).where(Slide.id.in_(list(slide_ids)))).all()
    return dict(rows)  # type: ignore[arg-type]


def mark_dispatched(session: Session, slide_id: int, flow_run_id: str) -> None:
    """Remember which flow run was asked to analyse a queued slide (so the next pass does not ask again)."""
    slide = require_slide(session, slide_id)
    slide.flow_run_id = flow_run_id
    slide.updated_at = utcnow()


def begin_analysis(
    session: Session, slide_id: int, *, owner: str, lease_seconds: float, flow_run_id: str | None = None
) -> Slide | None:
    """Take a queued slide for analysis, atomically: one conditional UPDATE, so two workers never both win.

    Returns the slide, now ``processing`` with a lease held by ``owner``; ``None`` when it was not queued
    (another worker has it, or it is finished).
    """
    now = utcnow()
    taken = session.execute(
        update(Slide)
        .where(Slide.id == slide_id, Slide.status == SlideStatus.QUEUED)
        .values(
            status=SlideStatus.PROCESSING,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
            finished_at=None,
            error=None,
            flow_run_id=flow_run_id,
            attempts=Slide.attempts + 1,
            updated_at=now,
            progress_fraction=None,
            progress_note=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not taken:
        return None
    slide = require_slide(session, slide_id)
    session.refresh(slide)
    return slide


def renew_lease(session: Session, slide_id: int, *, owner: str, lease_seconds: float) -> bool:
    """Extend the lease of a slide this owner is analysing; ``False`` when it is no longer this owner's."""
    renewed = session.execute(
        update(Slide)
        .where(Slide.id == slide_id, Slide.status == SlideStatus.PROCESSING, Slide.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(renewed)


def record_progress(session: Session, slide_id: int, *, owner: str, fraction: float, note: str) -> bool:
    """Say how far the analysis ``owner`` is running has come (``fraction`` 0-1, ``note`` in words).

    A conditional UPDATE: nothing is written (``False``) once the slide is no longer this owner's analysis, so a
    late report cannot put a progress bar on a finished or requeued slide.
    """
    written = session.execute(
        update(Slide)
        .where(Slide.id == slide_id, Slide.status == SlideStatus.PROCESSING, Slide.lease_owner == owner)
        .values(progress_fraction=min(max(float(fraction), 0.0), 1.0), progress_note=storable(note, 200))
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(written)


def requeue_slide(session: Session, slide_id: int, *, reason: str, actor: str = "papscreen") -> Slide:
    """Put a slide back in the queue (a retry, a re-score, or a dead worker's slide); audited."""
    slide = require_slide(session, slide_id)
    previous = slide.status
    move_status(slide, SlideStatus.QUEUED)
    slide.lease_owner = None
    slide.lease_expires_at = None
    slide.flow_run_id = None
    record_event(
        session, "slide.requeued", "slide", slide.id, actor=actor, details={"from": previous.value, "reason": reason}
    )
    return slide


def set_compute_lease(session: Session, slide_id: int, lease_id: str | None) -> None:
    """Record (or clear) the compute-slot lease the slide's analysis holds."""
    require_slide(session, slide_id).compute_lease_id = lease_id


class StaleAnalysis(NamedTuple):
    """An analysis found dead by :func:`requeue_stale`: queued again, or given up (``requeued`` False)."""

    slide_id: int
    compute_lease_id: str | None
    requeued: bool
    reason: str


def interrupted_analyses(session: Session, *, now: datetime, owner_is_dead: Callable[[str], bool]) -> list[int]:
    """The slides :func:`requeue_stale` would take now (lease run out, or owner gone), without changing them."""
    stuck = session.execute(
        select(Slide.id, Slide.lease_expires_at, Slide.lease_owner)
        .where(Slide.status == SlideStatus.PROCESSING)
        .order_by(Slide.id)
    ).all()
    return [
        slide_id
        for slide_id, expires, owner in stuck
        if expires is None or expires < now or (owner and owner_is_dead(owner))
    ]


def requeue_stale(
    session: Session,
    *,
    now: datetime,
    owner_is_dead: Callable[[str], bool],
    max_attempts: int | None = None,
) -> list[StaleAnalysis]:
    """Queue again every slide whose analysis died: its lease ran out, or its owner process is gone.

    ``owner_is_dead(owner)`` answers for owners it can check (processes on this host); others wait for
    their lease to run out. A slide that has already been taken ``max_attempts`` times is not queued again:
    it is marked failed with the reason (``requeued`` False), for the caller to quarantine its scan, so that a
    scan that kills its worker cannot take the compute slot for ever. The caller also releases each dead
    analysis' compute slot, which would otherwise stay taken until Prefect's own lease expires.
    """
    stuck = session.scalars(select(Slide).where(Slide.status == SlideStatus.PROCESSING).order_by(Slide.id)).all()
    found = []
    for slide in stuck:
        expired = slide.lease_expires_at is None or slide.lease_expires_at < now
        if expired or (slide.lease_owner and owner_is_dead(slide.lease_owner)):
            why = "its lease ran out" if expired else f"its worker {slide.lease_owner} is gone"
            lease = slide.compute_lease_id
            slide.compute_lease_id = None
            if max_attempts is not None and slide.attempts >= max_attempts:
                reason = f"analysis interrupted {slide.attempts} times (the last time {why}): not tried again"
                fail_slide(session, slide.id, reason)
                found.append(StaleAnalysis(slide.id, lease, False, reason))
                continue
            requeue_slide(session, slide.id, reason=f"analysis interrupted: {why}")
            found.append(StaleAnalysis(slide.id, lease, True, why))
    return found


def slides_to_rescore(session: Session, *, since: datetime, stage1_model_id: int, stage2_model_id: int) -> list[int]:
    """Analysed slides received since ``since`` whose current result came from other models than these."""
    query = (
        select(Slide.id)
        .where(
            Slide.status.in_([SlideStatus.DONE, SlideStatus.FAILED]),
            Slide.received_at >= since,
            or_(
                Slide.stage1_model_id.is_(None),
                Slide.stage2_model_id.is_(None),
                Slide.stage1_model_id != stage1_model_id,
                Slide.stage2_model_id != stage2_model_id,
            ),
        )
        .order_by(Slide.received_at, Slide.id)
    )
    return list(session.scalars(query).all())
