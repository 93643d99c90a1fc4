"""The worklist page against a seeded database, on SQLite and PostgreSQL (AppTest, no browser)."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from papscreen.dashboard.pages import worklist
from papscreen.dashboard.pages.worklist import PENDING_TABLE_KEY, TABLE_KEY, build_filter
from papscreen.db.database import Database
from tests.dashboard.apptest_helpers import (
    assert_ok,
    database_url,
    fresh_streamlit_caches,  # noqa: F401 (an autouse fixture)
    page_app,
    run_ok,
)
from tests.db.test_worklist_queries import BY_SCORE, seed_worklist

SLIDE_KEY = "papscreen_slide_id"  # where navigation.open_slide remembers the slide to show


@pytest.fixture
def app(database: Database, seeded: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The worklist page, run once, over the seeded database."""
    url = database_url(database)
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", url)
    return run_ok(page_app("worklist", url))


@pytest.fixture
def seeded(database: Database) -> dict[str, int]:
    """Slide ids by name (seeded before the page first runs)."""
    return seed_worklist(database).ids


def worklist_table(app: AppTest) -> pd.DataFrame:
    """The ranked table's data (the first table on the page)."""
    assert_ok(app)
    return next(df for df in app.dataframe if df.key == TABLE_KEY).value


def test_worklist_lists_slides_by_abnormal_score_with_rank_and_quintile(seeded: dict[str, int], app: AppTest) -> None:
    assert not app.error
    assert app.title[0].value == "Worklist"
    table = worklist_table(app)
    assert list(table["name"]) == BY_SCORE
    assert list(table["rank"]) == [f"{n}/10" for n in range(1, 11)]
    assert list(table["quintile"]) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert list(table["slide"]) == [seeded[name] for name in BY_SCORE]
    assert list(table["abnormal score"])[:2] == pytest.approx([0.97, 0.91])
    assert list(table.columns) == [
        "slide",
        "rank",
        "quintile",
        "name",
        "category",
        "adequacy",
        "abnormal score",
        "cells",
        "received",
        "status",
        "reviewed",
        "reviewed by",
        "report",
        "models",
    ]
    top = table.iloc[0]
    assert top["report"] == ""  # nobody has signed it yet
    assert (top["category"], top["status"], bool(top["reviewed"])) == ("SCC", "done", True)
    assert top["reviewed by"].startswith("ann, ")
    assert "ranked among 10 analysed slides" in app.caption[0].value


def test_slides_without_a_result_are_listed_apart_with_their_flow_run(seeded: dict[str, int], app: AppTest) -> None:
    pending = next(df for df in app.dataframe if df.key == PENDING_TABLE_KEY).value

    assert list(pending["name"]) == ["queued.svs", "processing.svs", "failed.svs"]
    assert list(pending["status"]) == ["queued", "processing", "failed"]
    assert pending["flow run"][1] == "http://prefect.test:4200/runs/flow-run/run-p"
    assert pending["error"][2] == "unreadable tile at level 0"
    assert pending["progress"][1] == pytest.approx(0.25)  # the running analysis says how far it is
    assert pending["doing"][1] == "stage 1: 120 of 480 tiles (25%)"
    assert app.subheader[0].value == "Waiting, in analysis or failed (3)"


def test_filters_narrow_the_worklist(seeded: dict[str, int], app: AppTest) -> None:
    app.multiselect(key="worklist_category").set_value(["HSIL"]).run()
    table = worklist_table(app)
    assert list(table["name"]) == ["alpha.svs", "golf.svs"]
    assert list(table["rank"]) == ["2/10", "3/10"]  # a filter keeps each slide's rank

    app.selectbox(key="worklist_reviewed").set_value("not reviewed").run()
    app.multiselect(key="worklist_category").set_value([]).run()
    table = worklist_table(app)
    assert len(table) == 9
    assert "delta.svs" not in set(table["name"])

    app.text_input(key="worklist_name").input("ECH").run()
    assert list(worklist_table(app)["name"]) == ["echo.svs"]

    app.text_input(key="worklist_name").input("no such slide").run()
    assert not any(df.key == TABLE_KEY for df in app.dataframe)
    assert "No analysed slide matches these filters" in app.info[0].value


def test_status_filter_adds_unranked_slides_at_the_end(seeded: dict[str, int], app: AppTest) -> None:
    app.multiselect(key="worklist_status").set_value(["done", "failed"]).run()
    table = worklist_table(app)

    assert list(table["name"]) == [*BY_SCORE, "failed.svs"]
    assert table["rank"].iloc[-1] == ""
    assert table["quintile"].isna().iloc[-1]


def test_selecting_a_row_opens_its_slide(seeded: dict[str, int], app: AppTest) -> None:
    assert SLIDE_KEY not in app.session_state

    app.session_state[TABLE_KEY] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    run_ok(app)

    assert app.session_state[SLIDE_KEY] == seeded[BY_SCORE[1]] == seeded["alpha.svs"]


def test_selecting_a_waiting_slide_opens_it(seeded: dict[str, int], app: AppTest) -> None:
    app.session_state[PENDING_TABLE_KEY] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    app.run()

    assert app.session_state[SLIDE_KEY] == seeded["failed.svs"]


def test_until_is_a_whole_day() -> None:
    found = build_filter(
        statuses=["done"],
        categories=["HSIL"],
        reviewed="reviewed",
        since=date(2025, 3, 1),
        until=date(2025, 3, 1),
        name="",
    )

    assert (found.received_until - found.received_since).days == 1
    assert (found.categories, found.reviewed) == (("HSIL",), True)


def test_the_report_column_says_where_sign_out_stands() -> None:
    signed = SimpleNamespace(signout_status="signed out", interpretation="HSIL", signed_out_by="dr_p")
    waiting = SimpleNamespace(signout_status="awaiting pathologist", interpretation="ASC-H", signed_out_by=None)
    unsigned = SimpleNamespace(signout_status=None, interpretation=None, signed_out_by=None)
    assert [worklist._report_text(r) for r in (signed, waiting, unsigned)] == [
        "signed out: HSIL (dr_p)",
        "awaiting pathologist: ASC-H",
        "",
    ]
