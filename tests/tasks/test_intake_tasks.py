"""The intake's claim-check-move, and how an interrupted pass is finished (no Prefect needed: plain functions)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import SlideStatus, utcnow
from papscreen.intake import destination, move_file, scan_intake, sha256_of
from papscreen.tasks import intake as intake_tasks
from papscreen.tasks.intake import ingest_arrival, owner_is_dead, recover_unstored
from papscreen.tasks.runtime import worker_identity
from tests.flows.service import OLD, mark_settled, write_field_scan


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
    mark_settled(scan)
    (arrival,) = _arrivals(settings)
    outcome = ingest_arrival(arrival, settings, database)
    assert outcome.status == "quarantined"
    assert "pyramidal TIFF" in outcome.detail
    assert (settings.intake_dir / "slide" / "Data0000.dat").is_file()  # its data is left where it was


# --- one file never stops a pass (issue 16) ---------------------------------------------------------------------


def _ingest_all(settings: Settings, database: Database) -> dict[str, str]:
    return {a.name: intake_tasks.ingest_isolated(a, settings, database).status for a in _arrivals(settings)}


def test_a_name_that_is_not_utf8_is_ingested_under_a_printable_name(settings: Settings, database: Database) -> None:
    odd = Path(os.fsdecode(os.fsencode(settings.intake_dir) + b"/scan-\xe9\xff.png"))
    write_field_scan(odd, seed=3)
    write_field_scan(settings.intake_dir / "good.png", seed=4)
    assert _ingest_all(settings, database) == {"good.png": "queued", "scan-\ufffd\ufffd.png": "queued"}
    again = _ingest_all(settings, database)
    assert again == {}  # both moved to the store: nothing left, nothing taken twice
    with database.session() as session:
        assert queries.status_counts(session)[SlideStatus.QUEUED] == 2


def test_a_nested_name_longer_than_the_database_column_is_ingested(settings: Settings, database: Database) -> None:
    deep = settings.intake_dir / ("a" * 200) / ("b" * 200) / ("c" * 150 + ".png")
    write_field_scan(deep, seed=5)
    (arrival,) = _arrivals(settings)
    assert len(arrival.name) > queries.slides.NAME_CHARS
    outcome = intake_tasks.ingest_isolated(arrival, settings, database)
    assert outcome.status == "queued"
    with database.session() as session:
        slide = queries.get_slide(session, outcome.slide_id)
        assert len(slide.original_name) == queries.slides.NAME_CHARS
        assert slide.original_name.endswith("c.png")
        assert Path(slide.stored_path).is_file()


def test_a_file_gone_before_it_is_read_is_skipped_and_the_pass_goes_on(settings: Settings, database: Database) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=6)
    write_field_scan(settings.intake_dir / "b.png", seed=7)
    first, second = _arrivals(settings)
    first.path.unlink()  # taken away between the listing and the hashing
    assert intake_tasks.ingest_isolated(first, settings, database).status == "gone"
    assert intake_tasks.ingest_isolated(second, settings, database).status == "queued"


def test_a_file_gone_during_its_check_is_settled_by_recovery_once(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=8)
    (arrival,) = _arrivals(settings)

    def vanish(path: Path, _limits: object) -> None:
        path.unlink()
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(intake_tasks, "probe_scan", vanish)
    assert intake_tasks.ingest_isolated(arrival, settings, database).status == "gone"
    monkeypatch.undo()
    assert len(recover_unstored(settings, database)) == 1
    assert recover_unstored(settings, database) == []
    with database.session() as session:
        (slide,) = queries.list_slides(session)
        assert slide.status == SlideStatus.FAILED
        assert "left the intake folder" in slide.error


def test_an_unexpected_error_quarantines_that_file_only(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=9)
    write_field_scan(settings.intake_dir / "b.png", seed=10)
    real_probe = intake_tasks.probe_scan

    def probe(path: Path, limits: object) -> object:
        if path.name == "a.png":
            raise ValueError("a decoder's surprise")
        return real_probe(path, limits)

    monkeypatch.setattr(intake_tasks, "probe_scan", probe)
    assert _ingest_all(settings, database) == {"a.png": "quarantined", "b.png": "queued"}
    with database.session() as session:
        quarantined = queries.list_slides(session, statuses=[SlideStatus.QUARANTINED])
        assert [s.original_name for s in quarantined] == ["a.png"]
        assert "ValueError: a decoder's surprise" in quarantined[0].error
        assert Path(quarantined[0].stored_path).is_file()


def test_an_error_before_the_claim_quarantines_the_file_unread(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=11)

    def broken(_path: Path) -> str:
        raise RuntimeError("hashing broke")

    monkeypatch.setattr(intake_tasks, "sha256_of", broken)
    assert _ingest_all(settings, database) == {"a.png": "quarantined"}
    with database.session() as session:
        (slide,) = queries.list_slides(session)
        assert slide.status == SlideStatus.QUARANTINED
        assert "RuntimeError: hashing broke" in slide.error


def test_a_full_disk_leaves_the_file_in_place_and_the_next_pass_stores_it(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=12)

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(intake_tasks, "move_file", disk_full)
    assert _ingest_all(settings, database) == {"a.png": "retry"}
    assert (settings.intake_dir / "a.png").is_file()
    monkeypatch.undo()
    assert recover_unstored(settings, database) == []  # still in the intake: the pass finishes it
    assert _ingest_all(settings, database) == {"a.png": "queued"}
    with database.session() as session:
        assert queries.status_counts(session)[SlideStatus.QUEUED] == 1
        assert queries.status_counts(session)[SlideStatus.DUPLICATE] == 0


def test_a_scan_rewritten_after_its_check_is_stored_only_as_its_new_content(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across file systems the store's copy must be what was claimed: a rewrite between check and move waits."""
    from papscreen.intake import files

    scan = write_field_scan(settings.intake_dir / "a.png", seed=12)
    monkeypatch.setattr(files, "_same_filesystem", lambda src, folder: False)
    probe = intake_tasks.probe_scan

    def rewritten_after_the_probe(path: Path, *args: object) -> object:
        info = probe(path, *args)
        write_field_scan(path, seed=13)  # the scanner writes the file again, keeping an old mtime
        return info

    monkeypatch.setattr(intake_tasks, "probe_scan", rewritten_after_the_probe)
    assert _ingest_all(settings, database) == {"a.png": "retry"}
    assert scan.is_file()
    monkeypatch.setattr(intake_tasks, "probe_scan", probe)
    new_content = scan.read_bytes()
    assert _ingest_all(settings, database) == {"a.png": "queued"}
    with database.session() as session:
        (stored,) = [s for s in queries.list_slides(session) if s.stored_path]
        assert Path(stored.stored_path).read_bytes() == new_content
        assert stored.sha256 == sha256_of(Path(stored.stored_path))


def test_a_file_that_keeps_failing_is_retried_with_a_doubling_wait_while_others_go_on(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=12)
    write_field_scan(settings.intake_dir / "b.png", seed=13)
    move = intake_tasks.move_file
    tries: list[str] = []

    def full_disk_for_a(src: Path, *args: object, **kwargs: object) -> Path:
        if src.name == "a.png":
            tries.append(src.name)
            raise OSError(28, "No space left on device")
        return move(src, *args, **kwargs)

    monkeypatch.setattr(intake_tasks, "move_file", full_disk_for_a)
    first = intake_tasks.ingest_pass(settings, database)
    assert {o.name: o.status for o in first.outcomes} == {"a.png": "retry", "b.png": "queued"}
    second = intake_tasks.ingest_pass(settings, database)  # at once: a.png's wait has not passed
    assert (second.outcomes, second.deferred, tries) == ([], ["a.png"], ["a.png"])
    with database.session() as session:
        (retry,) = queries.intake_retries(session)
        assert (retry.name, retry.failures, "No space left" in retry.last_error) == ("a.png", 1, True)
        wait = (retry.next_attempt_at - retry.first_failed_at).total_seconds()
    assert wait == pytest.approx(settings.intake.retry_seconds, abs=1)

    def due_now() -> None:
        with database.session(write=True) as session:
            for row in queries.intake_retries(session):
                row.next_attempt_at = row.first_failed_at

    due_now()
    intake_tasks.ingest_pass(settings, database)  # fails again: the wait doubles
    with database.session() as session:
        (retry,) = queries.intake_retries(session)
        wait = (retry.next_attempt_at - utcnow()).total_seconds()
        assert retry.failures == 2
    assert 1.5 * settings.intake.retry_seconds < wait <= 2 * settings.intake.retry_seconds
    monkeypatch.undo()
    due_now()
    third = intake_tasks.ingest_pass(settings, database)
    assert {o.name: o.status for o in third.outcomes} == {"a.png": "queued"}
    with database.session() as session:
        assert queries.intake_retries(session) == []  # done: its failures are forgotten


def test_the_retry_record_of_a_file_taken_out_of_the_intake_is_dropped(settings: Settings, database: Database) -> None:
    scan = write_field_scan(settings.intake_dir / "a.png", seed=12)
    with database.session(write=True) as session:
        queries.record_intake_failure(session, str(scan), "a.png", "EACCES", base_seconds=60, max_seconds=600)
    assert intake_tasks.ingest_pass(settings, database).deferred == ["a.png"]
    scan.unlink()
    assert intake_tasks.ingest_pass(settings, database).deferred == []
    with database.session() as session:
        assert queries.intake_retries(session) == []


@pytest.mark.parametrize("name", [b"scan-\xe9\xff.png", b"deep/" * 450 + b"scan.png"], ids=["not-utf8", "long-path"])
def test_a_claim_left_unfinished_by_a_file_whose_name_the_database_cannot_keep_is_finished(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch, name: bytes
) -> None:
    """Recovery must see that such a file is still in the intake (found by the soak, on a full disk)."""
    scan = Path(os.fsdecode(os.fsencode(settings.intake_dir) + b"/" + name))
    write_field_scan(scan, seed=5)

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(intake_tasks, "move_file", disk_full)
    assert list(_ingest_all(settings, database).values()) == ["retry"]
    monkeypatch.undo()
    assert recover_unstored(settings, database) == []  # still in the intake: left to the pass
    assert list(_ingest_all(settings, database).values()) == ["queued"]
    with database.session() as session:
        assert {s.status for s in queries.list_slides(session)} == {SlideStatus.QUEUED}


def test_a_duplicate_whose_file_is_gone_is_settled_once_and_stays_a_duplicate(
    settings: Settings, database: Database
) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=13)
    (arrival,) = _arrivals(settings)
    assert intake_tasks.ingest_isolated(arrival, settings, database).status == "queued"
    with database.session() as session:  # a concurrent pass claimed a copy, then its file went away
        claim = queries.claim_scan(
            session,
            sha256=sha256_of(Path(queries.list_slides(session)[0].stored_path)),
            original_name="copy.png",
            size_bytes=1,
            original_path=str(settings.intake_dir / "copy.png"),
        )
    assert claim.is_duplicate
    assert recover_unstored(settings, database) == [f"slide {claim.slide.id} (copy.png)"]
    assert recover_unstored(settings, database) == []
    with database.session() as session:
        duplicate = queries.get_slide(session, claim.slide.id)
        assert duplicate.status == SlideStatus.DUPLICATE
        assert "left the intake folder before it reached the quarantine" in duplicate.error


# --- overlapping passes (issue 16) ------------------------------------------------------------------------------


def _race_passes(settings: Settings, database: Database, passes: int) -> tuple[list[object], list[BaseException]]:
    """``passes`` threads polling the intake in lockstep (the service's loop, `intake --once`, another host)."""
    start = threading.Barrier(passes)
    results: list[object] = []
    errors: list[BaseException] = []

    def polling_pass() -> None:
        start.wait(timeout=30)
        try:
            for _ in range(50):
                if not _arrivals(settings):
                    return
                results.append(intake_tasks.ingest_pass(settings, database))
        except BaseException as e:  # noqa: BLE001 - reported by the caller's assertion
            errors.append(e)

    threads = [threading.Thread(target=polling_pass) for _ in range(passes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def test_overlapping_passes_never_lose_or_double_register_a_scan(settings: Settings, database: Database) -> None:
    scans = 8
    for trial in range(2):
        for i in range(scans):
            write_field_scan(settings.intake_dir / f"t{trial}" / f"scan_{i}.png", seed=1000 * trial + i)
        results, errors = _race_passes(settings, database, passes=3)
        assert errors == []
        assert results
        with database.session() as session:
            counts = queries.status_counts(session)
            assert counts[SlideStatus.QUEUED] == scans * (trial + 1)
            assert counts[SlideStatus.DUPLICATE] == counts[SlideStatus.FAILED] == 0
            stored = [Path(s.stored_path) for s in queries.list_slides(session)]
        assert all(path.is_file() for path in stored)
        assert len(set(stored)) == scans * (trial + 1)
        assert not any(p.is_file() for p in settings.intake_dir.rglob("*"))


def test_a_pass_leaves_the_files_to_the_pass_that_holds_the_lock(settings: Settings, database: Database) -> None:
    write_field_scan(settings.intake_dir / "a.png", seed=1)
    with intake_tasks.intake_lock(settings, database) as held:
        assert held is not None
        assert intake_tasks.ingest_pass(settings, database) is None
        assert (settings.intake_dir / "a.png").is_file()
    done = intake_tasks.ingest_pass(settings, database)
    assert done is not None
    assert [o.status for o in done.outcomes] == ["queued"]
