"""The audit page: every recorded action, filtered by person, action, slide and day, exported as CSV."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from papscreen.dashboard.pages.audit import audit_csv
from papscreen.db import queries
from papscreen.db.database import Database
from tests.dashboard.apptest_helpers import (
    assert_ok,
    database_url,
    fresh_streamlit_caches,  # noqa: F401 (an autouse fixture)
    page_app,
)
from tests.db.test_slide_view_queries import seed_models, seed_slide


@pytest.fixture
def seeded(database: Database, tmp_path: Path) -> tuple[int, int]:
    models = seed_models(database)
    first = seed_slide(database, models=models, results_dir=tmp_path / "one")
    second = seed_slide(database, "other.svs", models=models, results_dir=tmp_path / "two")
    with database.session() as s:
        queries.mark_slide_reviewed(s, first, reviewer="ann")
        queries.mark_gallery_viewed(s, first, user="ann")
        queries.sign_out(s, first, interpretation="NILM", user="ann", role="cytotechnologist")
        queries.mark_slide_reviewed(s, second, reviewer="bob")
        queries.record_event(s, "user.sign_in_failed", "user", "mallory", actor="mallory")
    return first, second


def _app(database: Database, role: str = "pathologist") -> AppTest:
    return assert_ok(page_app("audit", database_url(database), user="dr_p", signed_in=True, role=role).run())


def _table(app: AppTest) -> pd.DataFrame:
    (table,) = app.dataframe
    return table.value


def test_every_event_newest_first_then_filtered(database: Database, seeded: tuple[int, int]) -> None:
    first, second = seeded
    app = _app(database)
    table = _table(app)
    assert list(table["action"])[:2] == ["user.sign_in_failed", "slide.reviewed"]
    assert {"slide.signed_out", "slide.gallery_viewed", "user.sign_in_failed"} <= set(table["action"])
    assert table["at"].is_monotonic_decreasing

    app.selectbox(key="audit_person").set_value("ann").run()
    assert set(_table(assert_ok(app))["person"]) == {"ann"}
    app.multiselect(key="audit_actions").set_value(["slide.signed_out"]).run()
    table = _table(assert_ok(app))
    assert list(table["record"]) == [f"slide #{first}"]
    assert '"interpretation": "NILM"' in table["details"].iloc[0]

    app.selectbox(key="audit_person").set_value("everyone")
    app.multiselect(key="audit_actions").set_value([])
    app.number_input(key="audit_slide").set_value(second).run()
    assert list(_table(assert_ok(app))["person"]) == ["bob"]


def test_the_export_is_the_filtered_table_as_csv(database: Database, seeded: tuple[int, int]) -> None:
    app = _app(database, role="admin")
    app.selectbox(key="audit_person").set_value("mallory").run()
    assert [b.label for b in assert_ok(app).get("download_button")] == ["Export CSV"]
    exported = pd.read_csv(io.StringIO(audit_csv(_table(app)).decode()))  # what the button holds
    assert list(exported.columns) == ["at", "person", "action", "record", "details"]
    assert list(exported["action"]) == ["user.sign_in_failed"]
    assert exported["at"].iloc[0].endswith("Z")


def test_a_cytotechnologist_is_told_who_can_read_it(database: Database, seeded: tuple[int, int]) -> None:
    app = _app(database, role="cytotechnologist")
    assert not app.dataframe
    assert "for pathologists and admins" in app.info[0].value
