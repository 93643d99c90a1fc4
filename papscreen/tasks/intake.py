"""Intake tasks: claim each arrived scan once, then move it into the store or quarantine.

The order makes every crash recoverable and nothing lost:

1. hash the file and check it did not change meanwhile (still being written: leave it for the next pass);
2. claim its content in the database (committed): the unique index decides duplicates, across names and
   across concurrent intakes;
3. check the scan can be read (:func:`~papscreen.intake.probe_scan`);
4. move it (never copy-and-forget, never overwrite) to a path derived from the claim, then record that path.

A pass that stops between 2 and 4 leaves either the file in the intake (the next pass finds its claim and
finishes the move) or the file at its derived path (:func:`recover_unstored` records it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.slides import PATH_CHARS, storable
from papscreen.db.schema import Slide, SlideStatus, utcnow
from papscreen.errors import ImageError
from papscreen.intake import (
    Arrival,
    Scan,
    destination,
    move_file,
    printable,
    probe_scan,
    remove_stale_partials,
    scan_intake,
    sha256_of,
    unchanged_since,
    write_reason,
)
from papscreen.tasks.compute import release_compute_lease
from papscreen.tasks.retry import is_transient
from papscreen.tasks.runtime import worker_identity

__all__ = [
    "DUPLICATES_FOLDER",
    "INTAKE_LOCK",
    "MULTI_FILE_FORMATS",
    "IngestOutcome",
    "IntakeLock",
    "IntakePass",
    "IntakeWork",
    "ingest_arrival",
    "ingest_isolated",
    "ingest_pass",
    "ingest_task",
    "intake_lock",
    "look_for_work",
    "owner_is_dead",
    "quarantine_stored_scan",
    "recover_task",
    "recover_unstored",
    "settle_claims_task",
]

MULTI_FILE_FORMATS = {
    ".mrxs": "an MRXS scan is a file plus a data folder and the intake moves single files: convert it to a "
    "pyramidal TIFF, or analyse it in place with `papscreen analyze`",
}
"""Formats whose scan is more than one file: refused by the intake with the reason (their data stays put)."""

logger = logging.getLogger(__name__)

DUPLICATES_FOLDER = "duplicates"
"""Sub-folder of the quarantine for second copies of a scan: kept for a person to delete, never analysed."""


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one arrived file (``status``: queued, duplicate, quarantined or waiting)."""

    name: str
    status: str
    slide_id: int | None = None
    detail: str = ""
    path: str | None = None


def _quarantine_destination(settings: Settings, slide: Slide, name: str, *, duplicate: bool = False) -> Path:
    root = settings.quarantine_dir / DUPLICATES_FOLDER if duplicate else settings.quarantine_dir
    return destination(root, slide.id, name, slide.received_at)  # type: ignore[arg-type]


def _refused_sha(arrival: Arrival) -> str:
    """A stand-in content key for a file refused unread: a link (its target is never read) or a failed one."""
    try:
        target = os.readlink(arrival.path)
    except OSError:
        target = ""
    key = os.fsencode(arrival.path) + b"->" + os.fsencode(target)
    return hashlib.sha256(b"refused:" + key).hexdigest()


def _quarantine(settings: Settings, database: Database, arrival: Arrival, slide: Slide, reason: str) -> IngestOutcome:
    target = _quarantine_destination(settings, slide, arrival.name)
    moved = move_file(arrival.path, target)
    write_reason(moved, reason, {"slide_id": slide.id, "original_name": arrival.name})
    with database.session(write=True) as session:
        queries.quarantine_slide(session, slide.id, reason=reason, quarantined_path=str(moved))
    return IngestOutcome(arrival.name, "quarantined", slide.id, reason, str(moved))


def ingest_arrival(arrival: Arrival, settings: Settings, database: Database) -> IngestOutcome:
    """Claim, check and move one arrived file; see the module docstring for the order and why.

    Raises whatever the file system, the database or a reader raise (an :class:`~papscreen.errors.ImageError`
    aside, which quarantines the file); :func:`ingest_isolated` is what a pass calls.
    """
    if arrival.refused:
        return _refuse(settings, database, arrival, arrival.refused)
    try:
        sha256 = sha256_of(arrival.path)
    except FileNotFoundError:
        return _gone(arrival)
    if not unchanged_since(arrival.path, arrival.size, arrival.mtime):
        return IngestOutcome(arrival.name, "waiting", detail="changed while it was read: still being written")
    with database.session(write=True) as session:
        slide = queries.find_unfinished_claim(session, sha256, str(arrival.path))
        if slide is None:
            slide = queries.claim_scan(
                session,
                sha256=sha256,
                original_name=arrival.name,
                size_bytes=arrival.size,
                original_path=str(arrival.path),
            ).slide
    if slide.status == SlideStatus.DUPLICATE:
        return _move_duplicate(settings, database, arrival, slide)
    multi_file = MULTI_FILE_FORMATS.get(arrival.path.suffix.lower())
    if multi_file:
        return _quarantine(settings, database, arrival, slide, multi_file)
    try:
        info = probe_scan(arrival.path, settings.limits)
    except ImageError as e:
        return _quarantine(settings, database, arrival, slide, e.reason)
    target = destination(settings.store_dir, slide.id, arrival.name, slide.received_at)  # type: ignore[arg-type]
    moved = move_file(arrival.path, target, expected_sha256=slide.sha256)
    with database.session(write=True) as session:
        queries.mark_stored(
            session, slide.id, stored_path=str(moved), format=info.format, width=info.width, height=info.height
        )
    return IngestOutcome(arrival.name, "queued", slide.id, f"{info.kind} {info.width}x{info.height}", str(moved))


def ingest_isolated(arrival: Arrival, settings: Settings, database: Database) -> IngestOutcome:
    """:func:`ingest_arrival` for a pass: whatever one file raises is that file's outcome, never the pass's end.

    * the file left the intake meanwhile: ``gone`` (a claim it left is settled by the next recovery);
    * the database is unreachable: raised, for the task's retries (the flow records ``retry`` if they run out);
    * another cause that may pass (a full or failing disk, no permission yet): ``retry``, the file stays where
      it is for the next pass, which finds its claim and finishes;
    * anything else: the file is quarantined with the error as its reason (``quarantined``); if even that
      fails, ``retry``.
    """
    try:
        return ingest_arrival(arrival, settings, database)
    except Exception as e:
        if not os.path.lexists(arrival.path):
            return _gone(arrival)
        if is_transient(e):
            raise  # the database is away: the task's retries wait for it; the flow goes on if they run out
        reason = f"intake failed on this file: {_describe(e)}"
        if isinstance(e, OSError) and e.errno in _PASSING_ERRNOS:
            return IngestOutcome(arrival.name, "retry", detail=f"{reason}; left in place for the next pass")
        try:
            with database.session(write=True) as session:
                claimed = queries.find_unfinished_claim(session, None, str(arrival.path))
            if claimed is not None and claimed.status == SlideStatus.QUEUED:
                return _quarantine(settings, database, arrival, claimed, reason)
            return _refuse(settings, database, arrival, reason)
        except Exception as again:  # noqa: BLE001 - the file stays in place and the pass goes on
            return IngestOutcome(
                arrival.name, "retry", detail=f"{reason}; quarantining it failed too ({_describe(again)})"
            )


def _refuse(settings: Settings, database: Database, arrival: Arrival, reason: str) -> IngestOutcome:
    """Quarantine a file without reading it, under a claim keyed by its name (its content is never hashed)."""
    with database.session(write=True) as session:
        claim = queries.claim_scan(
            session,
            sha256=_refused_sha(arrival),
            original_name=arrival.name,
            size_bytes=0 if arrival.refused else arrival.size,
            original_path=str(arrival.path),
        )
    if claim.is_duplicate:
        return _move_duplicate(settings, database, arrival, claim.slide)
    return _quarantine(settings, database, arrival, claim.slide, reason)


def _gone(arrival: Arrival) -> IngestOutcome:
    return IngestOutcome(arrival.name, "gone", detail="left the intake folder before it was ingested")


_PASSING_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM, errno.EBUSY,
    errno.ETIMEDOUT, errno.ESTALE, errno.EROFS, errno.EAGAIN, errno.ENOMEM,
}  # fmt: skip
"""File-system errors whose cause may pass by itself: the file is kept in place for the next pass."""


def _describe(error: BaseException) -> str:
    return printable(f"{type(error).__name__}: {error}")[:500]


def _move_duplicate(settings: Settings, database: Database, arrival: Arrival, slide: Slide) -> IngestOutcome:
    moved = move_file(arrival.path, _quarantine_destination(settings, slide, arrival.name, duplicate=True))
    reason = slide.error or f"duplicate of slide {slide.duplicate_of_id}"
    write_reason(moved, reason, {"slide_id": slide.id, "duplicate_of": slide.duplicate_of_id})
    with database.session(write=True) as session:
        queries.mark_stored(session, slide.id, stored_path=str(moved))
    return IngestOutcome(arrival.name, "duplicate", slide.id, reason, str(moved))


INTAKE_LOCK = "intake"
"""The work lock an intake pass holds while it settles claims and ingests (one pass at a time, on any host)."""


@dataclass(frozen=True)
class IntakePass:
    """What one pass did while it held the intake lock."""

    outcomes: list[IngestOutcome]
    waiting: list[Path]
    settled: Any
    deferred: list[str] = field(default_factory=list)
    """Files left for later: an earlier failure that may pass, retried after a wait that doubles each time."""


class IntakeLock:
    """The intake lock as held by one pass: renewed at every file, released at the end."""

    def __init__(self, database: Database, owner: str, lease_seconds: float) -> None:
        self.database, self.owner, self.lease_seconds = database, owner, lease_seconds

    def renew(self) -> bool:
        """Extend the lease; ``False`` when the lock was lost (it ran out and another pass took it)."""
        with self.database.session(write=True) as session:
            return queries.renew_lock(session, INTAKE_LOCK, owner=self.owner, lease_seconds=self.lease_seconds)

    def release(self) -> None:
        """Give the lock back; if that fails the lease simply runs out."""
        try:
            with self.database.session(write=True) as session:
                queries.release_lock(session, INTAKE_LOCK, owner=self.owner)
        except Exception as e:  # noqa: BLE001 - an unreleased lock expires by itself
            logger.warning("could not release the intake lock (it expires by itself): %s", _describe(e))


@contextmanager
def intake_lock(settings: Settings, database: Database) -> Iterator[IntakeLock | None]:
    """Hold the intake lock for a pass, or yield ``None`` when another live pass holds it."""
    owner = f"{worker_identity()}#{uuid.uuid4().hex[:8]}"
    seconds = settings.orchestration.intake_lock_seconds
    with database.session(write=True) as session:
        held = queries.acquire_lock(
            session, INTAKE_LOCK, owner=owner, lease_seconds=seconds, owner_is_dead=_lock_owner_is_dead
        )
    if not held:
        yield None
        return
    lock = IntakeLock(database, owner, seconds)
    try:
        yield lock
    finally:
        lock.release()


def _lock_owner_is_dead(owner: str) -> bool:
    return owner_is_dead(owner.partition("#")[0])


def ingest_pass(
    settings: Settings,
    database: Database,
    *,
    ingest: Callable[[Arrival], IngestOutcome] | None = None,
    settle: Callable[[], Any] | None = None,
) -> IntakePass | None:
    """Settle interrupted claims, look at the intake folder and ingest what arrived, holding the intake lock.

    Returns ``None`` when another pass holds the lock (this one leaves the files to it). ``ingest`` and
    ``settle`` default to :func:`ingest_isolated` and :func:`recover_unstored`; the intake flow passes its
    Prefect tasks. If the lock is lost midway (this pass stalled past its lease and another took over), the
    pass stops before the next file.
    """
    ingest = ingest or (lambda arrival: ingest_isolated(arrival, settings, database))
    settle = settle or (lambda: recover_unstored(settings, database))
    with intake_lock(settings, database) as lock:
        if lock is None:
            return None
        settled = settle()
        scan = scan_intake(settings.intake_dir, settings.intake)
        retries = _retries(database)
        now = utcnow()
        due = [a for a in scan.ready if _due(retries.get(queries.path_key(str(a.path))), now)]
        deferred = [a.name for a in scan.ready if not _due(retries.get(queries.path_key(str(a.path))), now)]
        outcomes = []
        for arrival in due[: settings.orchestration.intake_batch]:
            if not lock.renew():
                logger.warning("the intake lock was taken over by another pass: the rest is left to it")
                break
            outcome = ingest(arrival)
            _note_retry(settings, database, arrival, outcome, retries)
            outcomes.append(outcome)
        _forget_vanished(database, retries, scan)
        return IntakePass(outcomes, scan.waiting, settled, deferred)


PLURALS = {"interrupted analysis": "interrupted analyses"}


@dataclass(frozen=True)
class IntakeWork:
    """What an intake pass would do now; empty when nothing arrived and nothing waits.

    Attributes:
        files: settled files in the intake folder whose turn has come (their path keys).
        queued: stored, queued slides whose analysis has not been started (or whose start was lost).
        interrupted: analyses whose lease ran out or whose worker is gone.
        unsettled: claims an interrupted pass left, whose file is no longer in the intake folder.
    """

    files: tuple[str, ...] = ()
    queued: tuple[int, ...] = ()
    interrupted: tuple[int, ...] = ()
    unsettled: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.files or self.queued or self.interrupted or self.unsettled)

    def describe(self) -> str:
        """``"2 new scans, 1 queued slide"``: why a pass is started, for the log."""
        parts = [
            (len(self.files), "new scan"),
            (len(self.queued), "queued slide"),
            (len(self.interrupted), "interrupted analysis"),
            (len(self.unsettled), "unsettled claim"),
        ]
        shown = [f"{n} {what if n == 1 else PLURALS.get(what, what + 's')}" for n, what in parts if n]
        return ", ".join(shown) or "nothing to do"


def look_for_work(settings: Settings, database: Database) -> IntakeWork:
    """What a pass would find now, read without the intake lock and without changing anything.

    Cheap (one folder listing and three small queries), so a watcher can start a pass only when there is
    something to do.
    """
    scan = scan_intake(settings.intake_dir, settings.intake)
    retries = _retries(database)
    now = utcnow()
    files = tuple(
        queries.path_key(str(a.path)) for a in scan.ready if _due(retries.get(queries.path_key(str(a.path))), now)
    )
    in_intake = _StillInIntake(settings.intake_dir)
    with database.session() as session:
        queued = queries.dispatchable_slides(
            session, now=now, redispatch_after_s=settings.orchestration.lease_seconds, limit=1000
        )
        interrupted = queries.interrupted_analyses(session, now=now, owner_is_dead=owner_is_dead)
        claims = [(c.id, c.original_path) for c in queries.unstored_claims(session)]
    unsettled = tuple(i for i, path in claims if not (path and in_intake(path)))
    return IntakeWork(files, tuple(queued), tuple(interrupted), unsettled)


def _retries(database: Database) -> dict[str, datetime]:
    """When each file that failed for a passing cause may be tried again (none if the table cannot be read)."""
    try:
        with database.session() as session:
            return {r.path_key: r.next_attempt_at for r in queries.intake_retries(session)}
    except Exception as e:  # noqa: BLE001 - without the back-off record every file is simply tried now
        logger.warning("could not read the intake retry schedule (every file is tried now): %s", _describe(e))
        return {}


def _due(next_attempt: datetime | None, now: datetime) -> bool:
    return next_attempt is None or next_attempt <= now


def _note_retry(
    settings: Settings, database: Database, arrival: Arrival, outcome: IngestOutcome, retries: dict[str, datetime]
) -> None:
    """Push a file that must be retried back by its back-off; forget the failures of one that is done."""
    key = queries.path_key(str(arrival.path))
    try:
        if outcome.status == "retry":
            with database.session(write=True) as session:
                retry = queries.record_intake_failure(
                    session,
                    str(arrival.path),
                    arrival.name,
                    outcome.detail or "",
                    base_seconds=settings.intake.retry_seconds,
                    max_seconds=settings.intake.retry_max_seconds,
                )
                retries[key] = retry.next_attempt_at
                logger.warning(
                    "%s failed %d time(s) in a row; next try at %s: %s",
                    arrival.name,
                    retry.failures,
                    retry.next_attempt_at.isoformat(timespec="seconds"),
                    outcome.detail,
                )
        elif key in retries and outcome.status != "waiting":
            with database.session(write=True) as session:
                queries.clear_intake_retries(session, [key])
            retries.pop(key)
    except Exception as e:  # noqa: BLE001 - the back-off is a courtesy: without it the file is tried next pass
        logger.warning("could not record the retry of %s: %s", arrival.name, _describe(e))


def _forget_vanished(database: Database, retries: dict[str, datetime], scan: Scan) -> None:
    """Drop the retry records of files that are no longer in the intake folder (taken away by someone)."""
    present = {queries.path_key(str(a.path)) for a in scan.ready} | {queries.path_key(str(p)) for p in scan.waiting}
    gone = [key for key in retries if key not in present]
    if not gone:
        return
    try:
        with database.session(write=True) as session:
            queries.clear_intake_retries(session, gone)
    except Exception as e:  # noqa: BLE001 - tried again next pass
        logger.warning("could not forget the retries of files that left the intake: %s", _describe(e))


def owner_is_dead(owner: str) -> bool:
    """True when a lease owner (``host:pid``) is a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != worker_identity().rpartition(":")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


def recover_unstored(settings: Settings, database: Database) -> list[str]:
    """Finish claims an interrupted pass left behind; returns one line per slide it settled.

    The file is either still in the intake (left alone: the pass that follows finds its claim) or at the path
    derived from the claim, in the store or quarantine (recorded here, with the reason its sidecar gives), or
    gone (the claim is closed with that reason). A claim that cannot be settled now is logged and tried again
    next time; it never stops the others.
    """
    settled = []
    with database.session(write=True) as session:
        claims = [
            (s.id, s.status, s.original_name, s.original_path, s.received_at) for s in queries.unstored_claims(session)
        ]
    in_intake = _StillInIntake(settings.intake_dir)
    for slide_id, status, name, original_path, received in claims:
        if original_path and in_intake(original_path):
            continue
        try:
            _settle_claim(settings, database, slide_id, status, name, received)
        except Exception as e:  # noqa: BLE001 - one claim must not keep the others from being settled
            logger.warning("could not settle the claim of slide %s (%s) yet: %s", slide_id, name, _describe(e))
            continue
        settled.append(f"slide {slide_id} ({name})")
    return settled


class _StillInIntake:
    """Whether a claim's file is still in the intake folder, from the path the database kept.

    The database keeps a path as valid UTF-8 of bounded length (:func:`~papscreen.db.queries.slides.storable`),
    so a name that is not UTF-8, or a path longer than the column, is no longer the file's real path: for those
    the intake folder is listed once and its paths compared in their stored form.
    """

    def __init__(self, intake_dir: Path) -> None:
        self.intake_dir = intake_dir
        self._stored_forms: set[str] | None = None

    def __call__(self, original_path: str) -> bool:
        if os.path.lexists(original_path):
            return True
        if "\ufffd" not in original_path and len(original_path) < PATH_CHARS:
            return False  # kept exactly as it was: it really has gone
        if self._stored_forms is None:
            self._stored_forms = {
                storable(os.path.join(folder, name), PATH_CHARS)  # type: ignore[misc]
                for folder, _dirs, names in os.walk(self.intake_dir)
                for name in names
            }
        return original_path in self._stored_forms


def _settle_claim(
    settings: Settings, database: Database, slide_id: int, status: SlideStatus, name: str, received: datetime
) -> None:
    stored = destination(settings.store_dir, slide_id, name, received)
    quarantined = destination(settings.quarantine_dir, slide_id, name, received)
    duplicate = destination(settings.quarantine_dir / DUPLICATES_FOLDER, slide_id, name, received)
    for target in (stored, quarantined, duplicate):
        remove_stale_partials(target)  # a copy its killed pass left half written
    with database.session(write=True) as session:
        if status == SlideStatus.DUPLICATE:
            if duplicate.exists():
                queries.mark_stored(session, slide_id, stored_path=str(duplicate))
            else:
                queries.settle_gone_duplicate(
                    session, slide_id, f"{name} left the intake folder before it reached the quarantine"
                )
        elif stored.exists():
            try:
                info = probe_scan(stored, settings.limits)
                queries.mark_stored(
                    session, slide_id, stored_path=str(stored), format=info.format, width=info.width, height=info.height
                )
            except ImageError as e:
                queries.mark_stored(session, slide_id, stored_path=str(stored))
                queries.fail_slide(session, slide_id, f"stored, but cannot be read: {e.reason}")
        elif quarantined.exists():
            reason = _sidecar_reason(quarantined) or "quarantined by an interrupted intake pass"
            queries.quarantine_slide(session, slide_id, reason=reason, quarantined_path=str(quarantined))
        else:
            queries.fail_slide(session, slide_id, f"{name} left the intake folder before it was stored")


def _sidecar_reason(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".reason.json")
    try:
        return str(json.loads(sidecar.read_text())["reason"])
    except (OSError, ValueError, KeyError):
        return None


@task(name="recover", cache_policy=NO_CACHE)
def recover_task(settings: Settings, database: Database) -> list[int]:
    """Requeue analyses whose worker died or whose lease ran out (safe from any pass, lock or not).

    A slide interrupted ``orchestration.max_attempts`` times is quarantined with the reason instead.
    """
    logger = get_run_logger()
    with database.session(write=True) as session:
        stale = queries.requeue_stale(
            session,
            now=utcnow(),
            owner_is_dead=owner_is_dead,
            max_attempts=settings.orchestration.max_attempts,
        )
    for found in stale:
        if found.compute_lease_id:
            release_compute_lease(found.compute_lease_id)
        if found.requeued:
            continue
        try:
            quarantine_stored_scan(settings, database, found.slide_id, found.reason)
        except Exception as e:  # noqa: BLE001 - the slide stays failed with its reason; the pass goes on
            logger.warning(
                "slide %d failed (%s); its scan could not be quarantined: %s", found.slide_id, found.reason, e
            )
        else:
            logger.warning("slide %d quarantined: %s", found.slide_id, found.reason)
    requeued = [found.slide_id for found in stale if found.requeued]
    if requeued:
        logger.warning("queued again after an interrupted analysis: slides %s", requeued)
    return requeued


def quarantine_stored_scan(settings: Settings, database: Database, slide_id: int, reason: str) -> str | None:
    """Move a stored scan that cannot be analysed to the quarantine, with its reason beside it; recorded."""
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        stored, name, received = slide.stored_path, slide.original_name, slide.received_at  # type: ignore[union-attr]
    moved: str | None = None
    if stored and Path(stored).exists():
        target = move_file(Path(stored), destination(settings.quarantine_dir, slide_id, name, received))  # type: ignore[arg-type]
        write_reason(target, reason, {"slide_id": slide_id, "original_name": name})
        moved = str(target)
    with database.session(write=True) as session:
        queries.quarantine_slide(session, slide_id, reason=reason, quarantined_path=moved or stored)
    return moved


@task(name="settle claims", cache_policy=NO_CACHE)
def settle_claims_task(settings: Settings, database: Database) -> list[str]:
    """Settle the claims an interrupted intake pass left (run while holding the intake lock)."""
    settled = recover_unstored(settings, database)
    if settled:
        get_run_logger().warning("settled claims an interrupted intake left: %s", "; ".join(settled))
    return settled


@task(name="ingest", task_run_name="ingest {arrival.name}", cache_policy=NO_CACHE)
def ingest_task(arrival: Arrival, settings: Settings, database: Database) -> IngestOutcome:
    """One arrived file into the store (or quarantine), logged for the Prefect UI."""
    outcome = ingest_isolated(arrival, settings, database)
    logger = get_run_logger()
    if outcome.status in ("quarantined", "retry", "gone"):
        logger.warning("%s %s: %s", arrival.name, outcome.status, outcome.detail)
    else:
        logger.info("%s: %s (slide %s) %s", arrival.name, outcome.status, outcome.slide_id, outcome.detail)
    return outcome
