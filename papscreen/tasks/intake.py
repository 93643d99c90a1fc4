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

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Slide, SlideStatus, utcnow
from papscreen.errors import ImageError
from papscreen.intake import Arrival, destination, move_file, probe_scan, sha256_of, unchanged_since, write_reason
from papscreen.tasks.compute import release_compute_lease
from papscreen.tasks.runtime import worker_identity

__all__ = [
    "DUPLICATES_FOLDER",
    "MULTI_FILE_FORMATS",
    "IngestOutcome",
    "ingest_arrival",
    "ingest_task",
    "owner_is_dead",
    "recover_task",
    "recover_unstored",
]

MULTI_FILE_FORMATS = {
    ".mrxs": "an MRXS scan is a file plus a data folder and the intake moves single files: convert it to a "
    "pyramidal TIFF, or analyse it in place with `papscreen analyze`",
}
"""Formats whose scan is more than one file: refused by the intake with the reason (their data stays put)."""

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
    """A stand-in content key for a refused link (its target is never read)."""
    try:
        target = os.readlink(arrival.path)
    except OSError:
        target = "?"
    return hashlib.sha256(f"refused-link:{arrival.name}->{target}".encode()).hexdigest()


def _quarantine(settings: Settings, database: Database, arrival: Arrival, slide: Slide, reason: str) -> IngestOutcome:
    target = _quarantine_destination(settings, slide, arrival.name)
    moved = move_file(arrival.path, target)
    write_reason(moved, reason, {"slide_id": slide.id, "original_name": arrival.name})
    with database.session() as session:
        queries.quarantine_slide(session, slide.id, reason=reason, quarantined_path=str(moved))
    return IngestOutcome(arrival.name, "quarantined", slide.id, reason, str(moved))


def ingest_arrival(arrival: Arrival, settings: Settings, database: Database) -> IngestOutcome:
    """Claim, check and move one arrived file; see the module docstring for the order and why."""
    if arrival.refused:
        with database.session() as session:
            claim = queries.claim_scan(
                session,
                sha256=_refused_sha(arrival),
                original_name=arrival.name,
                size_bytes=0,
                original_path=str(arrival.path),
            )
        if claim.is_duplicate:
            return _move_duplicate(settings, database, arrival, claim.slide)
        return _quarantine(settings, database, arrival, claim.slide, arrival.refused)

    sha256 = sha256_of(arrival.path)
    if not unchanged_since(arrival.path, arrival.size, arrival.mtime):
        return IngestOutcome(arrival.name, "waiting", detail="changed while it was read: still being written")
    with database.session() as session:
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
    moved = move_file(arrival.path, destination(settings.store_dir, slide.id, arrival.name, slide.received_at))  # type: ignore[arg-type]
    with database.session() as session:
        queries.mark_stored(
            session, slide.id, stored_path=str(moved), format=info.format, width=info.width, height=info.height
        )
    return IngestOutcome(arrival.name, "queued", slide.id, f"{info.kind} {info.width}x{info.height}", str(moved))


def _move_duplicate(settings: Settings, database: Database, arrival: Arrival, slide: Slide) -> IngestOutcome:
    moved = move_file(arrival.path, _quarantine_destination(settings, slide, arrival.name, duplicate=True))
    reason = slide.error or f"duplicate of slide {slide.duplicate_of_id}"
    write_reason(moved, reason, {"slide_id": slide.id, "duplicate_of": slide.duplicate_of_id})
    with database.session() as session:
        queries.mark_stored(session, slide.id, stored_path=str(moved))
    return IngestOutcome(arrival.name, "duplicate", slide.id, reason, str(moved))


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
    derived from the claim, in the store or quarantine (recorded here, with the reason its sidecar gives).
    """
    settled = []
    with database.session() as session:
        claims = [
            (s.id, s.status, s.original_name, s.original_path, s.received_at) for s in queries.unstored_claims(session)
        ]
    for slide_id, status, name, original_path, received in claims:
        if original_path and Path(original_path).exists():
            continue
        stored = destination(settings.store_dir, slide_id, name, received)
        quarantined = destination(settings.quarantine_dir, slide_id, name, received)
        duplicate = destination(settings.quarantine_dir / DUPLICATES_FOLDER, slide_id, name, received)
        with database.session() as session:
            if status == SlideStatus.DUPLICATE and duplicate.exists():
                queries.mark_stored(session, slide_id, stored_path=str(duplicate))
            elif stored.exists():
                try:
                    info = probe_scan(stored, settings.limits)
                    queries.mark_stored(
                        session,
                        slide_id,
                        stored_path=str(stored),
                        format=info.format,
                        width=info.width,
                        height=info.height,
                    )
                except ImageError as e:
                    queries.mark_stored(session, slide_id, stored_path=str(stored))
                    queries.fail_slide(session, slide_id, f"stored, but cannot be read: {e.reason}")
            elif quarantined.exists():
                reason = _sidecar_reason(quarantined) or "quarantined by an interrupted intake pass"
                queries.quarantine_slide(session, slide_id, reason=reason, quarantined_path=str(quarantined))
            else:
                queries.fail_slide(session, slide_id, f"{name} left the intake folder before it was stored")
        settled.append(f"slide {slide_id} ({name})")
    return settled


def _sidecar_reason(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".reason.json")
    try:
        return str(json.loads(sidecar.read_text())["reason"])
    except (OSError, ValueError, KeyError):
        return None


@task(name="recover", cache_policy=NO_CACHE)
def recover_task(settings: Settings, database: Database) -> dict[str, list]:
    """Requeue analyses whose worker died or whose lease ran out; settle interrupted claims."""
    logger = get_run_logger()
    with database.session() as session:
        stale = queries.requeue_stale(session, now=utcnow(), owner_is_dead=owner_is_dead)
    for _slide_id, lease in stale:
        if lease:
            release_compute_lease(lease)
    requeued = [slide_id for slide_id, _lease in stale]
    settled = recover_unstored(settings, database)
    if requeued:
        logger.warning("queued again after an interrupted analysis: slides %s", requeued)
    if settled:
        logger.warning("settled claims an interrupted intake left: %s", "; ".join(settled))
    return {"requeued": requeued, "settled": settled}


@task(name="ingest", task_run_name="ingest {arrival.name}", cache_policy=NO_CACHE)
def ingest_task(arrival: Arrival, settings: Settings, database: Database) -> IngestOutcome:
    """One arrived file into the store (or quarantine), logged for the Prefect UI."""
    outcome = ingest_arrival(arrival, settings, database)
    logger = get_run_logger()
    if outcome.status == "quarantined":
        logger.warning("%s quarantined: %s", arrival.name, outcome.detail)
    else:
        logger.info("%s: %s (slide %s) %s", arrival.name, outcome.status, outcome.slide_id, outcome.detail)
    return outcome
