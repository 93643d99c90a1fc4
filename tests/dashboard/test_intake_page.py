"""The intake page in AppTest against seeded databases (SQLite and PostgreSQL), its Retry action included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import SlideStatus
from tests.dashboard.apptest_helpers import (
    PREFECT_UI,
    database_url,
    fresh_streamlit_caches,  # noqa: F401 (an autouse fixture)
    page_app,
    run_ok,
)
from tests.dashboard.test_retry import SMALL_LIMIT, quarantine, settings_with_limit
from tests.db.test_registry_intake_views import seed_intake


@pytest.fixture
def page(database: Database, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The intake page's AppTest on the test's database, signed in as ``ann``."""
    url = database_url(database)
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", url)
    return page_app("intake", url)


def _table(app: AppTest, first_column_values: str) -> object:
    """The dataframe whose ``name`` column holds this value."""
    return next(d.value for d in app.dataframe if first_column_values in list(d.value.get("name", [])))


def test_seeded_page_shows_every_section(page: AppTest, database: Database) -> None:
    seeded = seed_intake(database)
    app = run_ok(page)

    assert not app.error
    assert app.header[0].value == "Intake"
    subheaders = [h.value for h in app.subheader]
    assert subheaders == ["Quarantined (1)", "Failed (1)", "Duplicates (1)", "Processing times"]

    quarantined = _table(app, "cut.jpg")
    assert list(quarantined["reason"]) == ["file is empty (0 bytes)"]  # type: ignore[index]
    assert list(quarantined["file"]) == ["/q/2024/05/06/00000005-cut.jpg"]  # type: ignore[index]

    failed = _table(app, "tiles.ndpi")
    assert list(failed["flow run"]) == [f"{PREFECT_UI}/runs/flow-run/analyze-failed"]  # type: ignore[index]
    assert "rescan it" in failed["error"][0]  # type: ignore[index]

    duplicates = _table(app, "copy of done-0.svs")
    assert list(duplicates["first arrival"]) == [seeded.first]  # type: ignore[index]
    assert list(duplicates["first name"]) == ["done-0.svs"]  # type: ignore[index]

    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {
        "Median analysis time": "2 min 0 s",
        "Median arrival to result": "6 min 40 s",
        "Slides in the median": "3",
    }
    times = _table(app, "done-2.svs")
    assert list(times["analysis"]) == ["5 min 0 s", "2 min 0 s", "1 min 0 s"]  # type: ignore[index]
    assert times["flow run"].iloc[0] == f"{PREFECT_UI}/runs/flow-run/analyze-2"  # type: ignore[index]

    assert app.selectbox(key="intake_retry_slide").value == seeded.quarantined


def test_empty_database_says_so(page: AppTest) -> None:
    app = run_ok(page)

    assert not app.error
    assert app.success[0].value == "Nothing in quarantine."
    assert "No slide analysed yet." in [c.value for c in app.caption]
    assert not app.dataframe
    assert not app.button


def test_retry_from_the_page_queues_a_file_that_reads_now(
    page: AppTest, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "papscreen-home"  # the conftest's PAPSCREEN_HOME: the page sees the same folders
    slide_id = quarantine(settings_with_limit(home, database, SMALL_LIMIT), database, "big.jpg")
    still_bad = quarantine(settings_with_limit(home, database, SMALL_LIMIT), database, "text.jpg", b"not a jpeg " * 20)
    monkeypatch.setenv("PAPSCREEN_LIMITS__MAX_FILE_BYTES", str(10**9))
    app = run_ok(page)
    assert app.subheader[0].value == "Quarantined (2)"

    app.selectbox(key="intake_retry_slide").select(slide_id)
    app.button(key="intake_retry").click()
    run_ok(app)

    assert "moved to the store and queued" in app.success[0].value
    assert app.subheader[0].value == "Quarantined (1)"  # the cache was cleared: the page shows the new state
    with database.session() as s:
        slide = queries.get_slide(s, slide_id)
        assert slide.status == SlideStatus.QUEUED  # type: ignore[union-attr]
        assert queries.list_events(s, entity_type="slide", entity_id=slide_id, limit=1)[0].actor == "ann"

    app.selectbox(key="intake_retry_slide").select(still_bad)
    app.button(key="intake_retry").click()
    run_ok(app)

    assert "still unreadable, left in quarantine" in app.warning[0].value
    assert app.subheader[0].value == "Quarantined (1)"
    with database.session() as s:
        assert queries.get_slide(s, still_bad).status == SlideStatus.QUARANTINED  # type: ignore[union-attr]


def test_a_refused_retry_shows_why_not_a_traceback(page: AppTest, database: Database) -> None:
    seeded = seed_intake(database)  # its quarantined file lies outside this test's quarantine folder
    app = run_ok(page)

    app.button(key="intake_retry").click()
    run_ok(app)

    assert not app.exception
    assert app.warning[0].value.startswith(f"retry failed: slide {seeded.quarantined}'s file is not in the quarantine")
    with database.session() as s:
        assert queries.get_slide(s, seeded.quarantined).status == SlideStatus.QUARANTINED  # type: ignore[union-attr]


def test_unmigrated_database_shows_what_torun_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", url)
    app = run_ok(page_app("intake", url))

    assert "papscreen db upgrade" in app.error[0].value
    assert not app.dataframe


def test_files_waiting_for_a_retry_are_shown_first_with_their_error(page: AppTest, database: Database) -> None:
    seed_intake(database)
    with database.session() as session:
        queries.record_intake_failure(
            session, "/lab/intake/a.png", "a.png", "OSError: [Errno 28] No space left on device", base_seconds=30,
            max_seconds=3600,
        )  # fmt: skip
    app = run_ok(page)
    assert app.subheader[0].value == "Waiting to be retried (1)"
    assert "full disk" in app.warning[0].value
    waiting = _table(app, "a.png")
    assert list(waiting["error"]) == ["OSError: [Errno 28] No space left on device"]  # type: ignore[index]
    assert list(waiting["failures"]) == [1]  # type: ignore[index]


def test_every_time_column_says_utc_and_shows_minutes(page: AppTest, database: Database) -> None:
    """One way to show a time on every page: "2026-12-07 14:05" under a heading that says UTC, never "+00:00"."""
    seed_intake(database)
    app = run_ok(page)

    time_columns = {"received", "quarantined", "failed", "first received", "finished", "first failed", "next try"}
    seen = 0
    for table in app.dataframe:
        config = json.loads(table.proto.columns or "{}")
        for name in set(table.value.columns) & time_columns:
            assert config[name]["label"] == f"{name} (UTC)"
            assert config[name]["type_config"] == {"type": "datetime", "format": "YYYY-MM-DD HH:mm", "timezone": "UTC"}
            seen += 1
    assert seen >= 6  # quarantined, failed, duplicates and the processing times all have times
