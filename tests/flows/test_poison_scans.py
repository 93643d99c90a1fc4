"""A scan cannot poison the queue: time limit, capped attempts, failures while storing, lost leases.

Runs the real intake and analyze-slide flows against the session's Prefect API, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import SlideStatus, utcnow
from papscreen.flows.analyze import analyze_slide_flow
from papscreen.flows.intake import intake_flow
from papscreen.tasks import analysis as analysis_tasks
from papscreen.tasks import intake as intake_tasks
from tests.flows.service import start_service, write_field_scan

pytestmark = pytest.mark.slow


def _stored_slide(database: Database) -> int:
    (done,) = intake_flow(dispatch="inline", analyze=False)["outcomes"]
    assert done["status"] == "queued"
    return done["slide_id"]


@pytest.mark.usefixtures("prefect_api")
def test_an_analysis_past_its_time_limit_is_quarantined_and_frees_the_line(
    database: Database, monkeypatch: pytest.MonkeyPatch, trained_model_folders: tuple[Path, Path]
) -> None:
    settings = start_service(monkeypatch, database, trained_model_folders)
    write_field_scan(settings.intake_dir / "slow.png", seed=1)
    slide_id = _stored_slide(database)
    clock = itertools.count(0.0, 10_000.0)  # every look at the clock is ~3 hours later
    real_limit = analysis_tasks.time_limit
    monkeypatch.setattr(analysis_tasks, "time_limit", lambda path, limit: real_limit(path, limit, clock.__next__))
    outcome = analyze_slide_flow(slide_id=slide_id, slide_name="slow.png")
    assert outcome["status"] == "quarantined"
    assert "time limit" in outcome["reason"]
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide.status == SlideStatus.QUARANTINED
        assert Path(slide.stored_path).is_relative_to(settings.quarantine_dir)
        assert Path(slide.stored_path).is_file()


@pytest.mark.usefixtures("prefect_api")
def test_a_failure_while_storing_the_result_fails_the_slide_not_strands_it(
    database: Database, monkeypatch: pytest.MonkeyPatch, trained_model_folders: tuple[Path, Path]
) -> None:
    settings = start_service(monkeypatch, database, trained_model_folders)
    write_field_scan(settings.intake_dir / "a.png", seed=2)
    slide_id = _stored_slide(database)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the results disk went away")

    monkeypatch.setattr(analysis_tasks, "write_exports", broken)
    with pytest.raises(RuntimeError, match="results disk"):
        analyze_slide_flow(slide_id=slide_id, slide_name="a.png")
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide.status == SlideStatus.FAILED
        assert "results disk" in slide.error
        assert slide.lease_owner is None


@pytest.mark.usefixtures("prefect_api")
def test_a_worker_that_lost_its_lease_does_not_store_its_result(
    database: Database, monkeypatch: pytest.MonkeyPatch, trained_model_folders: tuple[Path, Path]
) -> None:
    settings = start_service(monkeypatch, database, trained_model_folders)
    write_field_scan(settings.intake_dir / "a.png", seed=3)
    slide_id = _stored_slide(database)
    real_analyze = analysis_tasks.analyze_with_oom_fallback

    def analyze_then_lose_the_lease(*args: object, **kwargs: object) -> object:
        result = real_analyze(*args, **kwargs)
        with database.session() as session:  # meanwhile recovery thought this worker dead and requeued the slide
            queries.requeue_slide(session, slide_id, reason="test: lease taken away")
        return result

    monkeypatch.setattr(analysis_tasks, "analyze_with_oom_fallback", analyze_then_lose_the_lease)
    outcome = analyze_slide_flow(slide_id=slide_id, slide_name="a.png")
    assert outcome["status"] == "lost"
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide.status == SlideStatus.QUEUED
        assert queries.current_analysis(session, slide_id) is None


@pytest.mark.usefixtures("prefect_api")
def test_a_slide_interrupted_too_often_is_quarantined_by_the_next_pass(
    database: Database, monkeypatch: pytest.MonkeyPatch, trained_model_folders: tuple[Path, Path]
) -> None:
    settings = start_service(monkeypatch, database, trained_model_folders, PAPSCREEN_ORCHESTRATION__MAX_ATTEMPTS="2")
    write_field_scan(settings.intake_dir / "killer.png", seed=4)
    slide_id = _stored_slide(database)
    for attempt in range(2):  # two workers died on it (their leases ran out)
        with database.session() as session:
            assert queries.begin_analysis(session, slide_id, owner="elsewhere:1", lease_seconds=-1)
        result = intake_flow(dispatch="inline", analyze=False)
        assert result["recovered"]["requeued"] == ([slide_id] if attempt == 0 else [])
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide.status == SlideStatus.QUARANTINED
        assert "interrupted 2 times" in slide.error
        assert Path(slide.stored_path).is_relative_to(settings.quarantine_dir)
        assert slide.finished_at <= utcnow()


@pytest.mark.usefixtures("prefect_api")
def test_a_scan_that_cannot_be_quarantined_leaves_its_slide_failed_and_the_pass_goes_on(
    database: Database, monkeypatch: pytest.MonkeyPatch, trained_model_folders: tuple[Path, Path]
) -> None:
    settings = start_service(monkeypatch, database, trained_model_folders, PAPSCREEN_ORCHESTRATION__MAX_ATTEMPTS="1")
    write_field_scan(settings.intake_dir / "killer.png", seed=5)
    slide_id = _stored_slide(database)
    with database.session() as session:
        assert queries.begin_analysis(session, slide_id, owner="elsewhere:1", lease_seconds=-1)

    def quarantine_disk_gone(*_args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(intake_tasks, "quarantine_stored_scan", quarantine_disk_gone)
    write_field_scan(settings.intake_dir / "next.png", seed=6)
    assert intake_flow(dispatch="inline", analyze=False)["counts"] == {"queued": 1}
    with database.session() as session:
        slide = queries.get_slide(session, slide_id)
        assert slide.status == SlideStatus.FAILED
        assert "interrupted 1 times" in slide.error
