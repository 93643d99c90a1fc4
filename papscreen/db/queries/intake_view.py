"""What the dashboard's intake page reads: quarantined files, duplicates, failures and processing times.

Every function returns plain frozen dataclasses (never ORM objects) so the dashboard can cache them with
``st.cache_data`` and lay them out without a session. Medians are computed here in Python over a bounded window
of recent slides, so the answer is the same on SQLite and PostgreSQL (SQLite has no ``percentile_cont``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from papscreen.db.schema import IntakeRetry, Slide, SlideStatus

__all__ = [
    "DuplicateSlide",
    "FailedSlide",
    "ProcessingTime",
    "ProcessingTimes",
    "QuarantinedSlide",
    "RetryingFile",
    "duplicate_slides",
    "failed_slides",
    "processing_times",
    "quarantined_slides",
    "retrying_files",
]


@dataclass(frozen=True)
class QuarantinedSlide:
    """A scan the intake (or an analysis) refused, with why and where its file now lies.

    Attributes:
        id: the slide's id.
        name: its original name in the intake folder.
        reason: why it was quarantined, as the intake wrote it (says what to do).
        path: where the file lies now (in the quarantine folder), or ``None`` when unknown.
        received_at: when it arrived.
        quarantined_at: when it was quarantined.
        size_bytes: its size on arrival.
        flow_run_id: the flow run that last handled it, for the link to the Prefect UI.
    """

    id: int
    name: str
    reason: str | None
    path: str | None
    received_at: datetime
    quarantined_at: datetime | None
    size_bytes: int
    flow_run_id: str | None


@dataclass(frozen=True)
class DuplicateSlide:
    """A second copy of a scan already received: never analysed, kept for a person to delete.

    Attributes:
        id: the duplicate's slide id.
        name: the duplicate's original name.
        received_at: when the copy arrived.
        path: where the copy lies (the quarantine's ``duplicates`` folder).
        first_id: the first arrival's slide id (``None`` if that row was deleted).
        first_name: the first arrival's original name.
        first_received_at: when the first arrival came.
        first_status: the first arrival's status now.
    """

    id: int
    name: str
    received_at: datetime
    path: str | None
    first_id: int | None
    first_name: str | None
    first_received_at: datetime | None
    first_status: str | None


@dataclass(frozen=True)
class FailedSlide:
    """A slide whose analysis failed, with the error people read to fix it.

    Attributes:
        id: the slide's id.
        name: its original name.
        error: the error message.
        received_at: when it arrived.
        failed_at: when it failed.
        attempts: how many analyses were started for it.
        flow_run_id: the flow run that failed.
    """

    id: int
    name: str
    error: str | None
    received_at: datetime
    failed_at: datetime | None
    attempts: int
    flow_run_id: str | None


@dataclass(frozen=True)
class ProcessingTime:
    """How long one analysed slide took.

    Attributes:
        id: the slide's id.
        name: its original name.
        received_at: when it arrived.
        finished_at: when its analysis finished.
        analysis_s: ``finished_at - started_at`` (the analysis itself), or ``None`` without a start time.
        total_s: ``finished_at - received_at`` (arrival to result, queueing included).
        flow_run_id: the analysis' flow run.
    """

    id: int
    name: str
    received_at: datetime
    finished_at: datetime
    analysis_s: float | None
    total_s: float
    flow_run_id: str | None


@dataclass(frozen=True)
class ProcessingTimes:
    """Recent processing times and their medians.

    Attributes:
        recent: the newest finished slides, newest first.
        window: how many finished slides the medians are over (at most the window asked for).
        median_analysis_s: median analysis time over the window, ``None`` when no slide has one.
        median_total_s: median arrival-to-result time over the window, ``None`` when no slide finished.
    """

    recent: tuple[ProcessingTime, ...]
    window: int
    median_analysis_s: float | None
    median_total_s: float | None


def _latest_finished(session: Session, status: SlideStatus, limit: int) -> Sequence[Slide]:
    """The slides in ``status``, the most recently finished first (those never finished last)."""
    return session.scalars(
        select(Slide)
        .where(Slide.status == status)
        .order_by(Slide.finished_at.desc().nulls_last(), Slide.id.desc())
        .limit(limit)
    ).all()


def quarantined_slides(session: Session, *, limit: int = 200) -> list[QuarantinedSlide]:
    """Quarantined slides, the most recently quarantined first.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     quarantined_slides(s)
        []
    """
    rows = _latest_finished(session, SlideStatus.QUARANTINED, limit)
    return [
        QuarantinedSlide(
            id=s.id,
            name=s.original_name,
            reason=s.error,
            path=s.stored_path,
            received_at=s.received_at,
            quarantined_at=s.finished_at,
            size_bytes=s.size_bytes,
            flow_run_id=s.flow_run_id,
        )
        for s in rows
    ]


def duplicate_slides(session: Session, *, limit: int = 200) -> list[DuplicateSlide]:
    """Duplicates, newest first, each with its first arrival's id, name, arrival time and status.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> from papscreen.db.queries import claim_scan
        >>> with memory_database().session() as s:
        ...     _ = claim_scan(s, sha256="ab" * 32, original_name="a.jpg", size_bytes=10)
        ...     _ = claim_scan(s, sha256="ab" * 32, original_name="copy.jpg", size_bytes=10)
        ...     [(d.name, d.first_id, d.first_name) for d in duplicate_slides(s)]
        [('copy.jpg', 1, 'a.jpg')]
    """
    first = aliased(Slide)
    rows = session.execute(
        select(Slide, first)
        .outerjoin(first, first.id == Slide.duplicate_of_id)
        .where(Slide.status == SlideStatus.DUPLICATE)
        .order_by(Slide.received_at.desc(), Slide.id.desc())
        .limit(limit)
    ).all()
    return [
        DuplicateSlide(
            id=copy.id,
            name=copy.original_name,
            received_at=copy.received_at,
            path=copy.stored_path,
            first_id=original.id if original is not None else copy.duplicate_of_id,
            first_name=original.original_name if original is not None else None,
            first_received_at=original.received_at if original is not None else None,
            first_status=original.status.value if original is not None else None,
        )
        for copy, original in rows
    ]


def failed_slides(session: Session, *, limit: int = 200) -> list[FailedSlide]:
    """Failed slides, the most recent failure first.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     failed_slides(s)
        []
    """
    rows = _latest_finished(session, SlideStatus.FAILED, limit)
    return [
        FailedSlide(
            id=s.id,
            name=s.original_name,
            error=s.error,
            received_at=s.received_at,
            failed_at=s.finished_at,
            attempts=s.attempts,
            flow_run_id=s.flow_run_id,
        )
        for s in rows
    ]


def processing_times(session: Session, *, recent: int = 20, window: int = 200) -> ProcessingTimes:
    """The newest ``recent`` finished slides' times, and medians over the newest ``window`` of them.

    Only ``done`` slides count: a failure's time says nothing about how fast results come.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     processing_times(s)
        ProcessingTimes(recent=(), window=0, median_analysis_s=None, median_total_s=None)
    """
    if recent < 0 or window < 1:
        raise ValueError(f"recent must be >= 0 and window >= 1, got {recent} and {window}")
    rows = session.execute(
        select(Slide.id, Slide.original_name, Slide.received_at, Slide.started_at, Slide.finished_at, Slide.flow_run_id)
        .where(Slide.status == SlideStatus.DONE, Slide.finished_at.is_not(None))
        .order_by(Slide.finished_at.desc(), Slide.id.desc())
        .limit(max(recent, window))
    ).all()
    times = [
        ProcessingTime(
            id=row.id,
            name=row.original_name,
            received_at=row.received_at,
            finished_at=row.finished_at,
            analysis_s=(row.finished_at - row.started_at).total_seconds() if row.started_at is not None else None,
            total_s=(row.finished_at - row.received_at).total_seconds(),
            flow_run_id=row.flow_run_id,
        )
        for row in rows
    ]
    over = times[:window]
    analysis = [t.analysis_s for t in over if t.analysis_s is not None]
    return ProcessingTimes(
        recent=tuple(times[:recent]),
        window=len(over),
        median_analysis_s=statistics.median(analysis) if analysis else None,
        median_total_s=statistics.median([t.total_s for t in over]) if over else None,
    )


@dataclass(frozen=True)
class RetryingFile:
    """A file left in the intake folder after a failure that may pass (a full disk, no permission), to be retried.

    Attributes:
        name: its name in the intake folder.
        path: where it is.
        failures: failures in a row so far.
        last_error: what the last try said (what an IT admin fixes).
        first_failed_at: when it first failed.
        next_attempt_at: when the intake tries it again (the wait doubles with each failure, up to a cap).
    """

    name: str
    path: str
    failures: int
    last_error: str
    first_failed_at: datetime
    next_attempt_at: datetime


def retrying_files(session: Session, *, limit: int = 200) -> list[RetryingFile]:
    """Files waiting for their next try, the soonest first."""
    rows = session.scalars(select(IntakeRetry).order_by(IntakeRetry.next_attempt_at, IntakeRetry.name).limit(limit))
    return [RetryingFile(r.name, r.path, r.failures, r.last_error, r.first_failed_at, r.next_attempt_at) for r in rows]
