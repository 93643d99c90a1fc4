"""The quarantine Retry action, on SQLite and PostgreSQL: a file that reads now is stored and queued; others stay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from papscreen.config import Settings, load_settings
from papscreen.dashboard.retry import RetryError, retry_quarantined
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import SlideStatus
from papscreen.imaging.image_io import write_rgb
from papscreen.intake import Arrival, destination
from papscreen.tasks.intake import ingest_arrival

SMALL_LIMIT = 100


def settings_with_limit(home: Path, database: Database, max_file_bytes: int) -> Settings:
    """Settings on ``home`` and the test's database, with a file-size limit."""
    settings = load_settings(
        home=home,
        database_url=database.url.render_as_string(hide_password=False),
        limits={"max_file_bytes": max_file_bytes},
    )
    settings.ensure_folders()
    return settings


def quarantine(settings: Settings, database: Database, name: str, content: bytes | None = None) -> int:
    """Drop a file in the intake (a real JPEG unless ``content`` is given) and ingest it; it must be quarantined."""
    path = settings.intake_dir / name  # type: ignore[operator]
    if content is None:
        write_rgb(path, np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    else:
        path.write_bytes(content)
    info = path.stat()
    outcome = ingest_arrival(Arrival(path, name, info.st_size, info.st_mtime, None, None), settings, database)
    assert outcome.status == "quarantined", outcome
    assert outcome.slide_id is not None
    return outcome.slide_id


def slide_state(database: Database, slide_id: int) -> tuple[SlideStatus, str | None, str | None]:
    with database.session() as s:
        slide = queries.get_slide(s, slide_id)
        assert slide is not None
        return slide.status, slide.stored_path, slide.format


def test_a_file_over_a_limit_since_raised_is_stored_and_queued(database: Database, tmp_path: Path) -> None:
    small = settings_with_limit(tmp_path / "home", database, SMALL_LIMIT)
    slide_id = quarantine(small, database, "big.jpg")
    _, quarantined, _ = slide_state(database, slide_id)
    assert quarantined is not None
    sidecar = Path(quarantined + ".reason.json")
    assert sidecar.is_file()

    result = retry_quarantined(settings_with_limit(tmp_path / "home", database, 10**9), database, slide_id, user="ann")

    assert result.queued
    assert "moved to the store and queued" in result.message
    with database.session() as s:
        slide = queries.get_slide(s, slide_id)
        expected = destination(small.store_dir, slide_id, "big.jpg", slide.received_at)  # type: ignore[arg-type, union-attr]
    assert result.stored_path == str(expected)
    assert expected.is_file()
    assert not Path(quarantined).exists()
    assert sidecar.is_file()  # the record of why it was quarantined is kept
    assert slide_state(database, slide_id) == (SlideStatus.QUEUED, str(expected), "jpeg")
    with database.session() as s:
        event = queries.list_events(s, entity_type="slide", entity_id=slide_id, limit=1)[0]
        assert (event.action, event.actor) == ("slide.requeued", "ann")
        assert event.details == {"from": "quarantined", "reason": "retried from the dashboard by ann"}
        assert queries.dispatchable_slides(s, now=slide.received_at, redispatch_after_s=60) == [slide_id]  # type: ignore[union-attr]


def test_a_file_still_over_the_limit_stays_in_quarantine(database: Database, tmp_path: Path) -> None:
    small = settings_with_limit(tmp_path / "home", database, SMALL_LIMIT)
    slide_id = quarantine(small, database, "big.jpg")
    before = slide_state(database, slide_id)

    result = retry_quarantined(small, database, slide_id, user="ann")

    assert not result.queued
    assert result.stored_path is None
    assert result.message.startswith("still unreadable, left in quarantine: file is ")
    assert "over the limit of 100 bytes" in result.message
    assert slide_state(database, slide_id) == before
    assert Path(before[1]).is_file()  # type: ignore[arg-type]
    assert not any(small.store_dir.rglob("*.jpg"))  # type: ignore[union-attr]


def test_a_damaged_file_stays_in_quarantine_whatever_the_limits(database: Database, tmp_path: Path) -> None:
    settings = settings_with_limit(tmp_path / "home", database, 10**9)
    slide_id = quarantine(settings, database, "notes.jpg", b"this is a text file, not a JPEG")

    result = retry_quarantined(settings, database, slide_id, user="ann")

    assert not result.queued
    assert "left in quarantine" in result.message
    status, path, _ = slide_state(database, slide_id)
    assert status == SlideStatus.QUARANTINED
    assert Path(path).read_bytes() == b"this is a text file, not a JPEG"  # type: ignore[arg-type]


def test_a_taken_destination_is_never_overwritten(database: Database, tmp_path: Path) -> None:
    small = settings_with_limit(tmp_path / "home", database, SMALL_LIMIT)
    slide_id = quarantine(small, database, "big.jpg")
    with database.session() as s:
        received = queries.get_slide(s, slide_id).received_at  # type: ignore[union-attr]
    taken = destination(small.store_dir, slide_id, "big.jpg", received)  # type: ignore[arg-type]
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    before = slide_state(database, slide_id)

    with pytest.raises(RetryError, match="the store already holds"):
        retry_quarantined(settings_with_limit(tmp_path / "home", database, 10**9), database, slide_id, user="ann")

    assert taken.read_bytes() == b"someone else's file"
    assert Path(before[1]).is_file()  # type: ignore[arg-type]
    assert slide_state(database, slide_id) == before


def test_a_slide_that_is_not_quarantined_is_refused(database: Database, tmp_path: Path) -> None:
    settings = settings_with_limit(tmp_path / "home", database, 10**9)
    with database.session() as s:
        slide_id = queries.claim_scan(s, sha256="e" * 64, original_name="fine.jpg", size_bytes=1).slide.id

    with pytest.raises(RetryError, match=f"slide {slide_id} is queued, not quarantined"):
        retry_quarantined(settings, database, slide_id, user="ann")
    with pytest.raises(RetryError, match="there is no slide 999"):
        retry_quarantined(settings, database, 999, user="ann")


def test_a_file_outside_the_quarantine_or_gone_is_refused(database: Database, tmp_path: Path) -> None:
    settings = settings_with_limit(tmp_path / "home", database, 10**9)
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(b"x")
    gone = settings.quarantine_dir / "2024" / "00000002-gone.jpg"  # type: ignore[operator]
    with database.session() as s:
        ids = []
        for i, path in enumerate([outside, gone]):
            slide = queries.claim_scan(s, sha256=f"{i + 7:064x}", original_name=path.name, size_bytes=1).slide
            queries.quarantine_slide(s, slide.id, reason="bad", quarantined_path=str(path))
            ids.append(slide.id)

    with pytest.raises(RetryError, match="not in the quarantine folder"):
        retry_quarantined(settings, database, ids[0], user="ann")
    assert outside.read_bytes() == b"x"
    with pytest.raises(RetryError, match="is gone"):
        retry_quarantined(settings, database, ids[1], user="ann")
