"""The slide page through AppTest against a seeded database: what it shows, and the reviews it writes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from papscreen.dashboard.context import OPEN_ACCESS_USER
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.slide_view import SlideView, slide_view
from papscreen.db.queries.worklist import worklist
from papscreen.db.schema import ModelStage
from papscreen.imaging.image_io import write_rgb
from tests.dashboard.apptest_helpers import (
    PREFECT_UI,
    assert_ok,
    database_url,
    fresh_streamlit_caches,  # noqa: F401 (an autouse fixture)
    page_app,
)
from tests.db.test_slide_view_queries import (
    BY_SUSPICION,
    IN_GALLERY,
    PLANNED,
    SCAN_SIDE,
    PlannedCell,
    seed_models,
    seed_slide,
)


@pytest.fixture
def sqlite_database(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    """A migrated SQLite database, for the page tests that need not run on both backends."""
    path = tmp_path / "page.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    """The stored scan: a plain grey square (enough for the region view to read a window of)."""
    path = tmp_path / "store" / "case-017.png"
    write_rgb(path, np.full((SCAN_SIDE, SCAN_SIDE, 3), 230, np.uint8))
    return path


def _seed(database: Database, tmp_path: Path, scan: Path, **kwargs: Any) -> int:
    return seed_slide(database, models=seed_models(database), results_dir=tmp_path / "results", scan=scan, **kwargs)


def _app(
    database: Database,
    slide_id: int | None,
    *,
    user: str = OPEN_ACCESS_USER,
    signed_in: bool = False,
    role: str | None = None,
) -> AppTest:
    app = page_app("slide", database_url(database), user=user, signed_in=signed_in, role=role)
    if slide_id is not None:
        app.query_params["slide"] = str(slide_id)
    return app.run()


def _text(app: AppTest) -> str:
    return " ".join(
        [m.value for m in app.markdown]
        + [c.value for c in app.caption]
        + [w.value for w in app.warning]
        + [i.value for i in app.info]
    )


def app_view(database: Database, slide_id: int) -> SlideView:
    with database.session() as s:
        return slide_view(s, slide_id)


def _cell_ids(database: Database, slide_id: int) -> list[int]:
    with database.session() as s:
        return [c.id for c in slide_view(s, slide_id).cells]


def test_page_shows_the_slide(sqlite_database: Database, tmp_path: Path, scan: Path) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)

    app = assert_ok(_app(sqlite_database, slide_id))

    assert not app.error
    assert app.title[0].value == "case-017.svs"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"Category": "HSIL", "Adequacy": "satisfactory", "Abnormal score": "0.870", "Status": "done"}
    assert "**Why:** HSIL: 12 cells graded HSIL or worse with probability >= 0.9 (rule: >= 10)" in _text(app)
    assert {m.label: m.help for m in app.metric}["Adequacy"] == "enough squamous cells"
    text = _text(app)
    assert f"{PREFECT_UI}/runs/flow-run/run-{slide_id}" in text
    assert "**Not reviewed yet**" in text
    assert "0 of 6 cells reviewed" in text
    assert "Models: stage 1 s1-test (cnn20plus), stage 2 s2-test (resnet50)" in text
    assert "Gallery: the 5 most suspicious cells" in [h.value for h in app.subheader]
    captions = [c for image in app.image for c in image.captions]
    assert captions[0] == "Overlay: every cell boxed in its class colour"
    assert captions[1].startswith("Around cell #")  # the region view of a whole slide
    ids = {(c.x, c.y): c.id for c in app_view(sqlite_database, slide_id).cells}
    in_gallery = [f"#{ids[PLANNED[i].x, PLANNED[i].y]} {PLANNED[i].cls}" for i in IN_GALLERY]
    gallery = [c.rsplit(" ", 1)[0] for c in captions[3:]]
    assert gallery == in_gallery  # most suspicious first across classes, called by the cell's id
    assert captions[2] == captions[3] == f"{in_gallery[0]} 0.95"  # the chosen cell's crop in the review panel
    assert [b.label for b in app.button].count("Review") == 5
    table = app.dataframe[0].value
    assert list(table["suspicion"]) == [PLANNED[i].suspicion for i in BY_SUSPICION]
    assert list(table["class"])[:2] == ["HSIL", "SCC"]
    assert app.selectbox[0].value == table["id"][0]  # the most suspicious cell is chosen first
    assert app.radio[0].value == "HSIL"
    assert app.query_params["slide"] == str(slide_id)  # the page's URL names the slide, to share it


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "open-access"])
def test_saving_a_review_records_user_and_time(database: Database, tmp_path: Path, scan: Path, signed_in: bool) -> None:
    slide_id = _seed(database, tmp_path, scan)
    user = "ann" if signed_in else OPEN_ACCESS_USER
    target = _cell_ids(database, slide_id)[1]  # the SCC cell
    app = assert_ok(_app(database, slide_id, user=user, signed_in=signed_in))
    if signed_in:
        assert "Reviews are recorded as **ann**." in _text(app)
    else:
        assert f"Open access: reviews are recorded as **{OPEN_ACCESS_USER}**" in app.warning[0].value

    app.selectbox[0].set_value(target).run()
    assert_ok(app)
    assert app.radio[0].value == "SCC"
    app.radio[0].set_value("HSIL")
    app.button(key=f"slide_{slide_id}_save").click().run()
    assert_ok(app)

    assert app.success[0].value == f"Cell #{target} corrected from SCC to HSIL, recorded as {user}."
    with database.session() as s:
        cell = next(c for c in slide_view(s, slide_id).cells if c.id == target)
        events = queries.list_events(s, entity_type="cell", entity_id=target)
        corrections = queries.reviewed_cells(s)
    assert (cell.reviewer_label, cell.reviewer, cell.predicted_class) == ("HSIL", user, "SCC")
    assert cell.reviewed_at is not None
    assert [(e.action, e.actor) for e in events] == [("cell.reviewed", user)]
    assert events[0].details["label"] == "HSIL"
    assert events[0].details["predicted"] == "SCC"
    assert [(c.cell_id, c.label) for c in corrections] == [(target, "HSIL")]  # what retraining reads
    table = app.dataframe[0].value
    row = table[table["id"] == target].iloc[0]
    assert (row["reviewed as"], row["reviewed by"]) == ("HSIL", user)
    assert "1 of 6 cells reviewed" in _text(app)


def test_confirming_a_cell_says_so(sqlite_database: Database, tmp_path: Path, scan: Path) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)
    app = assert_ok(_app(sqlite_database, slide_id, user="bob", signed_in=True))

    app.button(key=f"slide_{slide_id}_save").click().run()

    top = _cell_ids(sqlite_database, slide_id)[0]
    assert assert_ok(app).success[0].value == f"Cell #{top} confirmed as HSIL, recorded as bob."


def test_mark_slide_reviewed(database: Database, tmp_path: Path, scan: Path) -> None:
    slide_id = _seed(database, tmp_path, scan)
    app = assert_ok(_app(database, slide_id, user="ann", signed_in=True))

    app.button(key=f"slide_{slide_id}_mark_reviewed").click().run()
    assert_ok(app)

    assert app.success[0].value == f"Slide #{slide_id} marked reviewed by ann."
    assert "**Reviewed** by ann at " in _text(app)
    with database.session() as s:
        slide = queries.get_slide(s, slide_id)
        assert slide is not None
        assert slide.reviewed_by == "ann"
        assert slide.reviewed_at is not None
        events = queries.list_events(s, entity_type="slide", entity_id=slide_id)
        assert ("slide.reviewed", "ann") in [(e.action, e.actor) for e in events]


def test_a_gallery_crop_chooses_its_cell(sqlite_database: Database, tmp_path: Path, scan: Path) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)
    app = assert_ok(_app(sqlite_database, slide_id))
    fourth = app_view(sqlite_database, slide_id).gallery[3]  # a NILM cell, not among the listed ones' first

    app.button(key=f"slide_{slide_id}_gallery_4").click().run()
    assert_ok(app)

    assert app.selectbox[0].value == fourth.cell_id
    assert app.radio[0].value == fourth.cls == "NILM"


def test_keys_walk_the_cells_and_accept_or_reject_in_one_press(
    sqlite_database: Database, tmp_path: Path, scan: Path
) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)
    app = assert_ok(_app(sqlite_database, slide_id, user="bob", signed_in=True))
    order = [c.id for c in app_view(sqlite_database, slide_id).reviewable_cells]
    shortcuts = {
        b.label: b.proto.shortcut.upper() for b in app.button if b.key and b.key.startswith(f"slide_{slide_id}_")
    }
    assert shortcuts["Accept HSIL"] == "A"
    assert (shortcuts["Reject: NILM"], shortcuts["Next"], shortcuts["Previous"]) == ("X", "J", "K")
    assert app.button(key=f"slide_{slide_id}_previous").disabled  # the first cell has none before it

    app.button(key=f"slide_{slide_id}_accept").click().run()
    assert assert_ok(app).success[0].value == f"Cell #{order[0]} confirmed as HSIL, recorded as bob."
    app.button(key=f"slide_{slide_id}_next").click().run()
    assert assert_ok(app).selectbox[0].value == order[1]
    app.button(key=f"slide_{slide_id}_reject").click().run()
    assert assert_ok(app).success[0].value == f"Cell #{order[1]} corrected from SCC to NILM, recorded as bob."
    assert app.radio[0].value == "NILM"
    app.button(key=f"slide_{slide_id}_previous").click().run()
    assert assert_ok(app).selectbox[0].value == order[0]

    third = app_view(sqlite_database, slide_id).gallery[2]  # the LSIL cell, judged in place from the gallery
    app.button(key=f"slide_{slide_id}_gallery_3_reject").click().run()
    assert assert_ok(app).success[0].value == f"Cell #{third.cell_id} corrected from LSIL to NILM, recorded as bob."
    assert app.button(key=f"slide_{slide_id}_gallery_4_reject").disabled  # a NILM cell cannot be rejected as NILM

    with sqlite_database.session() as s:
        reviewed = {c.cell_id: c.label for c in queries.reviewed_cells(s)}
    assert reviewed == {order[0]: "HSIL", order[1]: "NILM", third.cell_id: "NILM"}
    captions = [c for image in app.image for c in image.captions]
    assert f"#{order[1]} SCC 0.90 · reviewed NILM" in captions  # the gallery shows what the reviewer said


def test_a_table_row_chooses_its_cell(sqlite_database: Database, tmp_path: Path, scan: Path) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)
    app = assert_ok(_app(sqlite_database, slide_id))
    third = _cell_ids(sqlite_database, slide_id)[2]

    app.session_state[f"slide_{slide_id}_cells_table"] = {"selection": {"rows": [2]}}
    app.run()
    assert_ok(app)

    assert app.selectbox[0].value == third
    assert app.radio[0].value == "LSIL"


def test_picker_opens_a_slide(sqlite_database: Database, tmp_path: Path, scan: Path) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)
    app = assert_ok(_app(sqlite_database, None))

    assert app.title[0].value == "Slide review"
    assert app.selectbox[0].options == [f"#{slide_id} case-017.svs: HSIL, score 0.870, to review"]
    app.selectbox[0].set_value(slide_id).run()
    app.button(key="slide_picker_open").click().run()
    assert_ok(app)

    assert app.title[0].value == "case-017.svs"


def test_empty_database_says_so(sqlite_database: Database) -> None:
    app = assert_ok(_app(sqlite_database, None))

    assert "No slides yet" in app.info[0].value


def test_unknown_slide_shows_an_error_and_the_picker(sqlite_database: Database) -> None:
    app = assert_ok(_app(sqlite_database, 4242))

    assert app.error[0].value == "There is no slide #4242: it may have been removed. Choose another."


@pytest.mark.parametrize("status", ["queued", "failed"])
def test_slide_without_a_result(sqlite_database: Database, status: str) -> None:
    slide_id = seed_slide(sqlite_database, "waiting.svs", analysed=False)
    if status == "failed":
        with sqlite_database.session() as s:
            queries.fail_slide(s, slide_id, "unreadable tile at (0, 0)")

    app = assert_ok(_app(sqlite_database, slide_id))

    assert app.title[0].value == "waiting.svs"
    assert not app.image
    assert not app.dataframe
    assert not app.radio
    if status == "failed":
        assert app.error[0].value == (
            "The analysis of this scan failed: unreadable tile at (0, 0). The Intake page lists it with a Retry."
        )
        assert "analysed" not in app.caption[0].value  # it never was
    else:
        assert "no result yet (it is queued)" in app.info[0].value


def test_missing_files_give_messages_not_errors(sqlite_database: Database, tmp_path: Path, scan: Path) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)
    shutil.rmtree(tmp_path / "results")
    scan.unlink()

    app = assert_ok(_app(sqlite_database, slide_id))

    warnings = [w.value for w in app.warning]
    assert any("overlay" in w and "is missing" in w for w in warnings)
    assert any("no longer in the slide store" in w for w in warnings)
    assert not app.image
    assert any("gallery crop" in c.value and "is missing" in c.value for c in app.caption)
    assert app.dataframe  # the cells and the review still work
    assert app.radio


def test_a_field_has_no_region_view(sqlite_database: Database, tmp_path: Path, scan: Path) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan, scan_kind="field")

    app = assert_ok(_app(sqlite_database, slide_id))

    assert "Region view" not in [h.value for h in app.subheader]
    assert not any(c.startswith("Around cell") for image in app.image for c in image.captions)


def test_a_slide_in_analysis_shows_how_far_it_is(sqlite_database: Database) -> None:
    slide_id = seed_slide(sqlite_database, "big-slide.svs", analysed=False)
    with sqlite_database.session() as s:
        queries.begin_analysis(s, slide_id, owner="host:1", lease_seconds=600)
    with sqlite_database.session() as s:
        queries.record_progress(
            s, slide_id, owner="host:1", fraction=0.25, note="stage 1: 120 of 480 tiles (25%), about 3 min left"
        )

    app = assert_ok(_app(sqlite_database, slide_id))

    assert "no result yet (it is processing)" in app.info[0].value
    (bar,) = app.progress
    assert bar.value == 25
    assert bar.text == "Analysing: stage 1: 120 of 480 tiles (25%), about 3 min left"


def _sign_button(app: AppTest, slide_id: int):
    return app.button(key=f"slide_{slide_id}_sign")


def test_sign_out_goes_from_the_screener_to_the_pathologist_with_the_gallery_seen_first(
    sqlite_database: Database, tmp_path: Path, scan: Path
) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)
    ann = assert_ok(_app(sqlite_database, slide_id, user="ann", signed_in=True, role="cytotechnologist"))
    # The 5 gallery cells all fit on the page, so drawing it showed ann the whole gallery.
    with sqlite_database.session() as s:
        assert queries.gallery_viewed_by(s, slide_id, user="ann")
    assert ann.selectbox(key=f"slide_{slide_id}_interpretation").value == "HSIL"  # the machine's category first
    assert _sign_button(ann, slide_id).label == "Sign and send to a pathologist"
    ann.selectbox(key=f"slide_{slide_id}_interpretation").set_value("ASC-H")
    ann.text_area(key=f"slide_{slide_id}_signout_comment").input("atypical cells, cannot exclude HSIL")
    _sign_button(ann, slide_id).click().run()
    assert assert_ok(ann).success[0].value == (
        f"Slide #{slide_id} screened as ASC-H by ann: it now waits for a pathologist."
    )
    assert _sign_button(ann, slide_id).disabled  # a cytotechnologist cannot finish it
    assert "This slide waits for a pathologist's sign-out." in _text(ann)

    doctor = assert_ok(_app(sqlite_database, slide_id, user="dr_p", signed_in=True, role="pathologist"))
    assert "**ASC-H** (screening) by **ann**, cytotechnologist" in _text(doctor)
    assert doctor.selectbox(key=f"slide_{slide_id}_interpretation").value == "ASC-H"
    doctor.selectbox(key=f"slide_{slide_id}_interpretation").set_value("HSIL")
    assert _sign_button(doctor, slide_id).label == "Sign out"
    _sign_button(doctor, slide_id).click().run()
    assert assert_ok(doctor).success[0].value == f"Slide #{slide_id} signed out as HSIL by dr_p."
    assert "Signed out as **HSIL** by dr_p." in [s.value for s in doctor.success]
    with sqlite_database.session() as s:
        slide = queries.get_slide(s, slide_id)
    assert (slide.signout_status, slide.interpretation, slide.signed_out_by) == ("signed out", "HSIL", "dr_p")
    labels = [b.label for b in doctor.get("download_button")]
    assert labels == ["Report (PDF)", "Report (CSV)", "Report (JSON)"]


def test_nobody_signs_with_open_access_or_as_admin_or_before_the_whole_gallery(
    sqlite_database: Database, tmp_path: Path, scan: Path
) -> None:
    models = seed_models(sqlite_database)
    slide_id = seed_slide(sqlite_database, models=models, results_dir=tmp_path / "results", scan=scan)
    anonymous = assert_ok(_app(sqlite_database, slide_id))
    assert _sign_button(anonymous, slide_id).disabled
    assert "Sign-out needs named users" in _text(anonymous)
    admin = assert_ok(_app(sqlite_database, slide_id, user="root", signed_in=True, role="admin"))
    assert _sign_button(admin, slide_id).disabled
    assert "An admin account signs nothing out" in _text(admin)

    many = seed_slide(
        sqlite_database,
        "big.svs",
        models=models,
        results_dir=tmp_path / "big",
        cells=[PlannedCell(100.0 + 50 * i, 100.0, "HSIL", 0.99 - 0.01 * i) for i in range(20)],
    )
    ann = assert_ok(_app(sqlite_database, many, user="ann", signed_in=True, role="cytotechnologist"))
    assert _sign_button(ann, many).disabled  # 12 of 20 crops shown
    assert "Sign-out asks that you see all 20" in _text(ann)
    ann.toggle(key=f"slide_{many}_gallery_all").set_value(True).run()
    assert not _sign_button(assert_ok(ann), many).disabled


def test_a_result_from_a_synthetic_trained_model_says_it_is_not_for_diagnosis(
    sqlite_database: Database, tmp_path: Path, scan: Path
) -> None:
    models = seed_models(sqlite_database)
    with sqlite_database.session() as s:
        queries.record_data_provenance(s, models[1], "synthetic")
    slide_id = seed_slide(sqlite_database, models=models, results_dir=tmp_path / "results", scan=scan)
    app = assert_ok(_app(sqlite_database, slide_id))
    assert "stage 2 s2-test (resnet50; trained on synthetic demo data, not for diagnosis)" in _text(app)
    assert any("trained on synthetic demo data: it is not for diagnosis" in w.value for w in app.warning)


def test_a_slide_from_older_models_is_marked_and_can_be_rescored(
    sqlite_database: Database, tmp_path: Path, scan: Path
) -> None:
    slide_id = _seed(sqlite_database, tmp_path, scan)
    with sqlite_database.session() as s:
        assert not worklist(s)[0].older_models
        newer = queries.register_model_version(
            s, stage=ModelStage.STAGE2, name="s2-newer", architecture="resnet18", file_path="/m/3", sha256="3" * 64,
            auto_champion=False,
        )  # fmt: skip
        queries.promote(s, newer.id, actor="root")
    with sqlite_database.session() as s:
        assert worklist(s)[0].older_models  # the worklist's Models column says "older: re-score"
    app = assert_ok(_app(sqlite_database, slide_id, user="ann", signed_in=True, role="cytotechnologist"))
    assert "Newer models are champions now: this result comes from older ones." in _text(app)
    app.button(key=f"slide_{slide_id}_rescore").click().run()
    assert assert_ok(app).success[0].value.startswith(f"Slide #{slide_id} queued for a re-score")
    with sqlite_database.session() as s:
        assert queries.get_slide(s, slide_id).status == "queued"  # type: ignore[union-attr]
        events = queries.list_events(s, entity_type="slide", entity_id=slide_id)
    assert ("slide.requeued", "ann") in [(e.action, e.actor) for e in events]
