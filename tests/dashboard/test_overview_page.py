"""The overview page against a seeded database, on SQLite and PostgreSQL (AppTest, no browser)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from papscreen.db.database import Database
from tests.dashboard.apptest_helpers import (
    database_url,
    fresh_streamlit_caches,  # noqa: F401 (an autouse fixture)
    page_app,
    run_ok,
)
from tests.db.test_worklist_queries import seed_worklist


def run_overview(monkeypatch: pytest.MonkeyPatch, url: str) -> AppTest:
    """Run the overview page once against ``url``; fail on any exception the page raised."""
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", url)
    return run_ok(page_app("overview", url))


def test_overview_shows_the_day_the_queue_and_the_models(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_worklist(database)
    app = run_overview(monkeypatch, database_url(database))

    assert not app.error
    assert app.title[0].value == "Overview"
    metrics = {m.label: m.value for m in app.metric}
    assert {k: metrics[k] for k in list(metrics)[:8]} == {
        "Received today": "2",
        "Received, 7 days": "10",
        "Abnormal rate today": "50.0%",
        "Abnormal rate, 7 days": "50.0%",
        "Queue": "2",
        "Failed": "1",
        "Quarantined, 7 days": "1",
        "Unsatisfactory, 7 days": "1",
    }
    assert metrics["stage2 macro F1"] == "0.810"
    assert metrics["stage2 HSIL sensitivity"] == "0.780"
    assert metrics["stage2 SCC sensitivity"] == "0.900"
    assert metrics["stage1 accuracy"] == "0.930"
    assert "stage1 HSIL sensitivity" not in metrics
    text = " ".join(m.value for m in app.markdown)
    assert "s1-night-3 (cnn20)" in text
    assert "s2-night-3 (resnet18)" in text
    assert "**rejected**" in text
    assert "HSIL sensitivity fell by 0.08 (more than 0.05)" in text
    assert "**stage1**: not retrained yet." in text
    assert [h.value for h in app.subheader] == ["Champion models", "Last retraining"]


def test_empty_database_says_what_is_missing(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    app = run_overview(monkeypatch, database_url(database))

    assert not app.error
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Received today"] == "0"
    assert metrics["Abnormal rate today"] == "-"
    assert [i.value for i in app.info] == [
        "stage1: no champion yet. Train or import one: `papscreen models --help`.",
        "stage2: no champion yet. Train or import one: `papscreen models --help`.",
    ]


def test_an_unmigrated_database_is_an_error_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = run_overview(monkeypatch, f"sqlite:///{tmp_path / 'never-migrated.db'}")

    assert len(app.error) == 1
    assert "cannot read the database" in app.error[0].value
    assert "papscreen db upgrade" in app.error[0].value
    assert not app.metric
