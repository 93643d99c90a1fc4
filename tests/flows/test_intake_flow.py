"""Acceptance of the intake: 20 scans dropped at once, every good one analysed exactly once, nothing lost.

Runs the real intake and analyze-slide flows against the session's Prefect API, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Analysis, Cell, Slide, SlideStatus
from papscreen.flows.intake import intake_flow
from papscreen.intake import Arrival
from papscreen.tasks import intake as intake_tasks
from tests.flows.service import configure_service, copy_settled, mark_settled, start_service, write_field_scan

pytestmark = pytest.mark.slow

GOOD = 14


class SlowWriter(threading.Thread):
    """Writes a scan in pieces: the first half at once, the rest only when told to finish."""

    def __init__(self, source: Path, target: Path) -> None:
        super().__init__(daemon=True)
        self.data = source.read_bytes()
        self.target = target
        self.started_writing = threading.Event()
        self.finish = threading.Event()

    def run(self) -> None:
        half = len(self.data) // 2
        with self.target.open("wb") as f:
            f.write(self.data[:half])
            f.flush()
            self.started_writing.set()
            self.finish.wait(timeout=120)
            f.write(self.data[half:])


def _drop_twenty(intake: Path, work: Path) -> SlowWriter:
    """14 good scans, 2 duplicates (one renamed), 3 bad files, and one still being written."""
    for i in range(GOOD):
        suffix = (".png", ".jpg", ".tif")[i % 3]
        write_field_scan(intake / ("sub" if i % 4 == 0 else "") / f"scan_{i:02d}{suffix}", seed=100 + i, hsil=i % 3)
    copy_settled(intake / "scan_01.jpg", intake / "zz_same_scan_again" / "scan_01.jpg")  # same name, sub-folder
    copy_settled(intake / "scan_02.tif", intake / "renamed copy.tif")  # renamed
    for name, content in (("empty.png", b""), ("notes.jpg", b"this is not an image\n" * 20)):
        (intake / name).write_bytes(content)
        mark_settled(intake / name)
    jpeg = write_field_scan(work / "whole.jpg", seed=999)
    (intake / "truncated.jpg").write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    mark_settled(intake / "truncated.jpg")
    source = write_field_scan(work / "slow.png", seed=555, hsil=2)
    writer = SlowWriter(source, intake / "slow.png")
    writer.start()
    assert writer.started_writing.wait(timeout=30)
    return writer


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith((".reason.json", ".done")))


@pytest.mark.usefixtures("prefect_api")
def test_twenty_scans_at_once_each_good_one_analysed_exactly_once(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trained_model_folders: tuple[Path, Path]
) -> None:
    settings = start_service(monkeypatch, database, trained_model_folders)
    writer = _drop_twenty(settings.intake_dir, tmp_path)

    first = intake_flow(dispatch="inline")
    assert first["counts"] == {"queued": GOOD, "duplicate": 2, "quarantined": 3}
    assert [Path(p).name for p in first["still_writing"]] == ["slow.png"]
    assert sorted(a["status"] for a in first["analyses"]) == ["done"] * GOOD

    writer.finish.set()
    writer.join(timeout=30)
    (settings.intake_dir / "slow.png.done").touch()  # the scanner says it has finished
    second = intake_flow(dispatch="inline")
    assert second["counts"] == {"queued": 1}
    assert [a["status"] for a in second["analyses"]] == ["done"]

    third = intake_flow(dispatch="inline")  # nothing new: nothing analysed again
    assert third["counts"] == {}
    assert third["analyses"] == []

    with database.session() as session:
        counts = queries.status_counts(session)
        assert counts[SlideStatus.DONE] == GOOD + 1
        assert counts[SlideStatus.DUPLICATE] == 2
        assert counts[SlideStatus.QUARANTINED] == 3
        slides = session.scalars(select(Slide)).all()
        reasons = {s.original_name: s.error for s in slides if s.status == SlideStatus.QUARANTINED}
        assert "empty" in reasons["empty.png"]
        assert reasons["truncated.jpg"]
        assert reasons["notes.jpg"]
        for duplicate in (s for s in slides if s.status == SlideStatus.DUPLICATE):
            first_arrival = session.get(Slide, duplicate.duplicate_of_id)
            assert first_arrival.status == SlideStatus.DONE
            assert first_arrival.sha256 == duplicate.sha256
        # exactly one analysis per good slide, and its cells stored once
        per_slide = dict(session.execute(select(Analysis.slide_id, func.count()).group_by(Analysis.slide_id)).all())
        assert sorted(per_slide.values()) == [1] * (GOOD + 1)
        for slide in (s for s in slides if s.status == SlideStatus.DONE):
            stored = session.scalar(select(func.count()).select_from(Cell).where(Cell.slide_id == slide.id))
            assert stored == slide.cell_count > 0
            assert slide.attempts == 1
            assert slide.lease_owner is None
            assert Path(slide.stored_path).is_file()
            assert (
                Path(queries.current_analysis(session, slide.id).summary["details"]["results_dir"]) / "overlay.png"
            ).is_file()

    # every input file ended in the store or in quarantine; none deleted, none left behind
    assert _files_under(settings.intake_dir) == []
    assert len(_files_under(settings.store_dir)) == GOOD + 1
    assert len(_files_under(settings.quarantine_dir)) == 3 + 2
    assert len(list(settings.quarantine_dir.rglob("*.reason.json"))) == 5


@pytest.mark.usefixtures("prefect_api")
def test_a_file_whose_ingest_keeps_failing_waits_while_the_pass_goes_on(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = configure_service(
        monkeypatch,
        database,
        PAPSCREEN_ORCHESTRATION__TASK_RETRIES="1",
        PAPSCREEN_ORCHESTRATION__RETRY_DELAYS_SECONDS="[0]",
    )
    write_field_scan(settings.intake_dir / "a.png", seed=1)
    write_field_scan(settings.intake_dir / "b.png", seed=2)
    real_ingest = intake_tasks.ingest_arrival

    def database_away_for_a(arrival: Arrival, *args: object) -> object:
        if arrival.name == "a.png":
            raise OperationalError("select 1", {}, Exception("server closed the connection unexpectedly"))
        return real_ingest(arrival, *args)

    monkeypatch.setattr(intake_tasks, "ingest_arrival", database_away_for_a)
    result = intake_flow(dispatch="inline", analyze=False)
    assert result["counts"] == {"retry": 1, "queued": 1}
    assert (settings.intake_dir / "a.png").is_file()
    monkeypatch.setattr(intake_tasks, "ingest_arrival", real_ingest)
    waiting = intake_flow(dispatch="inline", analyze=False)  # at once: its retry wait has not passed
    assert (waiting["counts"], waiting["retry_later"]) == ({}, ["a.png"])
    with database.session(write=True) as session:
        for retry in queries.intake_retries(session):
            retry.next_attempt_at = retry.first_failed_at  # the wait has passed
    assert intake_flow(dispatch="inline", analyze=False)["counts"] == {"queued": 1}
