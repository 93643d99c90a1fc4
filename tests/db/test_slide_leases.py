"""Taking a slide for analysis, leases, recovery of dead workers, dispatch and re-scoring (both backends)."""

from __future__ import annotations

from datetime import timedelta

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage, SlideStatus, utcnow


def _queued(database: Database, name: str = "a.jpg", stored: bool = True) -> int:
    with database.session() as session:
        slide = queries.claim_scan(
            session,
            sha256=name.encode().hex().ljust(64, "0")[:64],
            original_name=name,
            size_bytes=10,
            original_path=f"/intake/{name}",
        ).slide
        if stored:
            queries.mark_stored(session, slide.id, stored_path=f"/store/{name}")
        return slide.id


def test_only_one_worker_takes_a_queued_slide(database: Database) -> None:
    slide_id = _queued(database)
    with database.session() as session:
        first = queries.begin_analysis(session, slide_id, owner="host:1", lease_seconds=60, flow_run_id="run-1")
        assert first is not None
        assert first.status == SlideStatus.PROCESSING
        assert first.attempts == 1
    with database.session() as session:
        assert queries.begin_analysis(session, slide_id, owner="host:2", lease_seconds=60) is None
        assert queries.renew_lease(session, slide_id, owner="host:1", lease_seconds=60)
        assert not queries.renew_lease(session, slide_id, owner="host:2", lease_seconds=60)


def test_dead_owner_or_expired_lease_is_queued_again_with_its_compute_lease(database: Database) -> None:
    dead, expired, alive = _queued(database, "dead.jpg"), _queued(database, "expired.jpg"), _queued(database, "ok.jpg")
    with database.session() as session:
        queries.begin_analysis(session, dead, owner="host:111", lease_seconds=600)
        queries.set_compute_lease(session, dead, "lease-1")
        queries.begin_analysis(session, expired, owner="other:5", lease_seconds=-1)
        queries.begin_analysis(session, alive, owner="host:222", lease_seconds=600)
    with database.session() as session:
        stale = queries.requeue_stale(session, now=utcnow(), owner_is_dead=lambda owner: owner == "host:111")
    assert sorted((s.slide_id, s.compute_lease_id, s.requeued) for s in stale) == sorted(
        [(dead, "lease-1", True), (expired, None, True)]
    )
    with database.session() as session:
        assert queries.get_slide(session, dead).status == SlideStatus.QUEUED
        assert queries.get_slide(session, dead).compute_lease_id is None
        assert queries.get_slide(session, alive).status == SlideStatus.PROCESSING
        events = queries.list_events(session, entity_type="slide", entity_id=dead)
        assert any(e.action == "slide.requeued" and "is gone" in e.details["reason"] for e in events)


def test_dispatch_once_until_the_run_is_overdue(database: Database) -> None:
    ready, unstored = _queued(database, "ready.jpg"), _queued(database, "unstored.jpg", stored=False)
    now = utcnow()
    with database.session() as session:
        assert queries.dispatchable_slides(session, now=now, redispatch_after_s=600) == [ready]
        queries.mark_dispatched(session, ready, "flow-run-1")
    with database.session() as session:
        assert queries.dispatchable_slides(session, now=now, redispatch_after_s=600) == []
        later = now + timedelta(seconds=601)
        assert queries.dispatchable_slides(session, now=later, redispatch_after_s=600) == [ready]
        assert [s.id for s in queries.unstored_claims(session)] == [unstored]


def test_an_unfinished_claim_is_found_again_not_recorded_twice(database: Database) -> None:
    slide_id = _queued(database, "crashed.jpg", stored=False)
    sha = b"crashed.jpg".hex().ljust(64, "0")[:64]
    with database.session() as session:
        assert queries.find_unfinished_claim(session, sha, "/intake/crashed.jpg").id == slide_id
        assert queries.find_unfinished_claim(session, sha, "/intake/elsewhere.jpg") is None


def test_rescore_selects_slides_scored_by_other_models(database: Database) -> None:
    with database.session() as session:
        old1 = queries.register_model_version(
            session, stage=ModelStage.STAGE1, name="s1", architecture="cnn20", file_path="/m1", sha256="1" * 64
        )
        old2 = queries.register_model_version(
            session, stage=ModelStage.STAGE2, name="s2", architecture="resnet18", file_path="/m2", sha256="2" * 64
        )
        new2 = queries.register_model_version(
            session, stage=ModelStage.STAGE2, name="s2b", architecture="resnet18", file_path="/m3", sha256="3" * 64
        )
    slide_id = _queued(database, "scored.jpg")
    with database.session() as session:
        queries.store_analysis(
            session,
            slide_id=slide_id,
            stage1_model_id=old1.id,
            stage2_model_id=old2.id,
            cells=[],
            summary=queries.SummaryRecord("NILM", "satisfactory", 0.1, 0, {}),
        )
        since = utcnow() - timedelta(days=1)
        assert queries.slides_to_rescore(session, since=since, stage1_model_id=old1.id, stage2_model_id=old2.id) == []
        assert queries.slides_to_rescore(session, since=since, stage1_model_id=old1.id, stage2_model_id=new2.id) == [
            slide_id
        ]
        queries.requeue_slide(session, slide_id, reason="rescore")
        assert queries.get_slide(session, slide_id).status == SlideStatus.QUEUED


def test_a_slide_interrupted_too_often_is_failed_not_queued_again(database: Database) -> None:
    slide_id = _queued(database, "poison.png")
    for attempt in range(1, 4):
        with database.session() as session:
            assert queries.begin_analysis(session, slide_id, owner="host:111", lease_seconds=-1) is not None
        with database.session() as session:
            (stale,) = queries.requeue_stale(session, now=utcnow(), owner_is_dead=lambda _o: False, max_attempts=3)
        assert stale.requeued == (attempt < 3)
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide.status == SlideStatus.FAILED
        assert "interrupted 3 times" in slide.error
        assert slide.lease_owner is None


def test_progress_is_written_only_by_the_running_analysis_and_ends_with_it(database: Database) -> None:
    slide_id = _queued(database)
    with database.session() as session:
        queries.begin_analysis(session, slide_id, owner="host:1", lease_seconds=60)
    with database.session() as session:
        assert queries.record_progress(session, slide_id, owner="host:1", fraction=0.25, note="stage 1: 1 of 4 tiles")
        assert not queries.record_progress(session, slide_id, owner="host:2", fraction=0.9, note="someone else")
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide is not None
        assert (slide.progress_fraction, slide.progress_note) == (0.25, "stage 1: 1 of 4 tiles")
        queries.fail_slide(session, slide_id, "boom", owner="host:1")
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide is not None
        assert (slide.progress_fraction, slide.progress_note) == (None, None)  # no bar on a finished slide
        assert not queries.record_progress(session, slide_id, owner="host:1", fraction=0.5, note="too late")
