"""Claiming scans exactly once, and the slide's life cycle, on both backends."""

from __future__ import annotations

import threading

import pytest

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Slide, SlideStatus

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_first_claim_queues_and_later_claims_are_duplicates(database: Database) -> None:
    with database.session() as s:
        first = queries.claim_scan(s, sha256=SHA_A, original_name="case1.jpg", size_bytes=100)
        same_name = queries.claim_scan(s, sha256=SHA_A, original_name="case1.jpg", size_bytes=100)
        renamed = queries.claim_scan(s, sha256=SHA_A, original_name="renamed.jpg", size_bytes=100)
        other = queries.claim_scan(s, sha256=SHA_B, original_name="case2.jpg", size_bytes=50)
        first_id = first.slide.id
    assert not first.is_duplicate
    assert first.slide.status == SlideStatus.QUEUED
    for claim in (same_name, renamed):
        assert claim.is_duplicate
        assert claim.slide.status == SlideStatus.DUPLICATE
        assert claim.slide.duplicate_of_id == first_id
        assert "case1.jpg" in (claim.slide.error or "")
    assert not other.is_duplicate
    with database.session() as s:
        counts = queries.status_counts(s)
    assert counts[SlideStatus.QUEUED] == 2
    assert counts[SlideStatus.DUPLICATE] == 2


def test_concurrent_claims_of_one_scan_yield_exactly_one_owner(database: Database) -> None:
    """Eight intakes race to claim the same content; the unique index lets exactly one win."""
    barrier = threading.Barrier(8)
    outcomes: list[bool] = []
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        try:
            barrier.wait()
            with database.session() as s:
                outcomes.append(
                    queries.claim_scan(s, sha256=SHA_A, original_name=f"copy{i}.jpg", size_bytes=1).is_duplicate
                )
        except BaseException as e:  # noqa: BLE001 - collected and re-raised in the test thread
            errors.append(e)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(outcomes) == [False] + [True] * 7
    with database.session() as s:
        assert queries.status_counts(s)[SlideStatus.QUEUED] == 1


def test_life_cycle_and_refused_transitions(database: Database) -> None:
    with database.session() as s:
        slide_id = queries.claim_scan(s, sha256=SHA_A, original_name="a.png", size_bytes=1).slide.id
        queries.mark_stored(s, slide_id, stored_path="/store/a.png", format="png", width=10, height=20)
        queries.start_processing(s, slide_id, flow_run_id="run-1")
        queries.fail_slide(s, slide_id, "CUDA out of memory")
    with database.session() as s:
        slide = queries.get_slide(s, slide_id)
        assert slide is not None
        assert slide.status == SlideStatus.FAILED
        assert slide.error == "CUDA out of memory"
        assert (slide.width, slide.height, slide.format) == (10, 20, "png")
        queries.start_processing(s, slide_id)  # a retry is allowed
        assert slide.error is None
    with database.session() as s:
        dup = queries.claim_scan(s, sha256=SHA_A, original_name="again.png", size_bytes=1).slide
        with pytest.raises(queries.InvalidTransitionError, match="duplicate to processing"):
            queries.start_processing(s, dup.id)


def test_quarantine_records_reason_and_audit_event(database: Database) -> None:
    with database.session() as s:
        slide_id = queries.claim_scan(s, sha256=SHA_A, original_name="bad.jpg", size_bytes=1).slide.id
        queries.quarantine_slide(s, slide_id, reason="image data is truncated", quarantined_path="/q/bad.jpg")
    with database.session() as s:
        slide = s.get(Slide, slide_id)
        assert slide is not None
        assert slide.status == SlideStatus.QUARANTINED
        assert slide.error == "image data is truncated"
        assert slide.stored_path == "/q/bad.jpg"
        events = queries.list_events(s, entity_type="slide", entity_id=slide_id)
        assert [e.action for e in events] == ["slide.quarantined"]


def test_list_slides_filters_by_status(database: Database) -> None:
    with database.session() as s:
        queries.claim_scan(s, sha256=SHA_A, original_name="a", size_bytes=1)
        queries.claim_scan(s, sha256=SHA_A, original_name="b", size_bytes=1)
    with database.session() as s:
        assert [x.original_name for x in queries.list_slides(s, statuses=[SlideStatus.DUPLICATE])] == ["b"]
        assert len(queries.list_slides(s)) == 2


def test_timestamps_come_back_timezone_aware_utc(database: Database) -> None:
    with database.session() as s:
        slide_id = queries.claim_scan(s, sha256=SHA_A, original_name="a", size_bytes=1).slide.id
    with database.session() as s:
        slide = queries.get_slide(s, slide_id)
        assert slide is not None
        assert slide.received_at.utcoffset() is not None
        assert slide.received_at.utcoffset().total_seconds() == 0
