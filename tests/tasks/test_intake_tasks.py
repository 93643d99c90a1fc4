"""The intake's claim-check-move, and how an interrupted pass is finished (no Prefect needed: plain functions)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import SlideStatus
from papscreen.intake import destination, move_file, scan_intake
from papscreen.tasks import intake as intake_tasks
from papscreen.tasks.intake import ingest_arrival, owner_is_dead, recover_unstored
from papscreen.tasks.runtime import worker_identity
from tests.flows.service import OLD, write_field_scan


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    configured = Settings(home=tmp_path / "home", database_url=database.url.render_as_string(hide_password=False))
    configured.ensure_folders()
    return configured


def _arrivals(settings: Settings):
    return scan_intake(settings.intake_dir, settings.intake).ready


def test_crash_after_the_claim_is_finished_by_the_next_pass_not_called_a_duplicate(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=1)
    (arrival,) = _arrivals(settings)

    def crash(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(intake_tasks, "move_file", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest_arrival(arrival, settings, database)
    monkeypatch.undo()
    assert recover_unstored(settings, database) == []  # the file is still in the intake: left for the pass

    (again,) = _arrivals(settings)
    outcome = ingest_arrival(again, settings, database)
    assert outcome.status == "queued"
    with database.session() as session:
        assert queries.status_counts(session)[SlideStatus.DUPLICATE] == 0
        slide = queries.get_slide(session, outcome.slide_id)
        assert Path(slide.stored_path).is_file()


def test_crash_after_the_move_is_recorded_by_recovery(settings: Settings, database: Database) -> None:
    write_field_scan(settings.intake_dir / "b.png", seed=2)
    (arrival,) = _arrivals(settings)
    with database.session() as session:
        slide = queries.claim_scan(
            session, sha256="b" * 64, original_name="b.png", size_bytes=arrival.size, original_path=str(arrival.path)
        ).slide
        received = slide.received_at
    move_file(arrival.path, destination(settings.store_dir, slide.id, "b.png", received))  # then the power went
    assert recover_unstored(settings, database) == [f"slide {slide.id} (b.png)"]
    with database.session() as session:
        recovered = queries.get_slide(session, slide.id)
        assert recovered.status == SlideStatus.QUEUED
        assert recovered.format == "png"
        assert Path(recovered.stored_path).is_file()


def test_a_symlink_out_of_the_intake_is_quarantined_as_a_link(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.png"
    secret.write_bytes(b"not yours")
    link = settings.intake_dir / "link.png"
    link.symlink_to(secret)
    os.utime(link, (OLD, OLD), follow_symlinks=False)
    (arrival,) = _arrivals(settings)
    outcome = ingest_arrival(arrival, settings, database)
    assert outcome.status == "quarantined"
    assert "outside the intake folder" in outcome.detail
    assert Path(outcome.path).is_symlink()
    assert secret.read_bytes() == b"not yours"


def test_owner_is_dead_only_for_a_gone_process_of_this_host() -> None:
    host = worker_identity().rpartition(":")[0]
    assert not owner_is_dead(worker_identity())
    assert owner_is_dead(f"{host}:{2**22 + 12345}")
    assert not owner_is_dead("another-host:1")


def test_an_mrxs_scan_is_refused_with_what_to_do(settings: Settings, database: Database) -> None:
    scan = settings.intake_dir / "slide.mrxs"
    scan.write_bytes(b"[GENERAL]\n")
    (settings.intake_dir / "slide").mkdir()
    (settings.intake_dir / "slide" / "Data0000.dat").write_bytes(b"\0" * 16)
    os.utime(scan, (OLD, OLD))
    (arrival,) = _arrivals(settings)
    outcome = ingest_arrival(arrival, settings, database)
    assert outcome.status == "quarantined"
    assert "pyramidal TIFF" in outcome.detail
    assert (settings.intake_dir / "slide" / "Data0000.dat").is_file()  # its data is left where it was
