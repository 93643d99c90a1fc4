"""The dashboard's shell (app.py) in AppTest against a seeded database on both backends: every page renders,
known failures become one error, and the Prefect UI address is found."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.exc import OperationalError
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from papscreen.config import Settings
from papscreen.dashboard import app as dashboard_app
from papscreen.dashboard.launch import APP_PATH
from papscreen.dashboard.pages import overview
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Decision, ModelStage, TrainingStatus
from papscreen.errors import PapscreenError
from tests.dashboard.apptest_helpers import (
    assert_ok,
    database_url,
    fresh_streamlit_caches,  # noqa: F401 (an autouse fixture)
    run_ok,
)

CLASSES = ("NILM", "LSIL", "HSIL", "SCC")


@dataclass(frozen=True)
class Seeded:
    """What :func:`seed_dashboard` put in the database."""

    url: str
    hsil_slide: int
    nilm_slide: int
    queued_slide: int
    failed_slide: int
    names: tuple[str, ...]


def _png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[...] = colour
    pixels[size[1] // 4 : 3 * size[1] // 4, size[0] // 4 : 3 * size[0] // 4] = (40, 40, 160)
    Image.fromarray(pixels).save(path)


def _cell(x: float, y: float, cls: str, p: float) -> queries.CellRecord:
    rest = (1.0 - p) / 3
    return queries.CellRecord(
        x=x,
        y=y,
        box_x0=int(x) - 20,
        box_y0=int(y) - 20,
        box_x1=int(x) + 20,
        box_y1=int(y) + 20,
        stage1_score=0.9,
        predicted_class=cls,
        probabilities={c: (p if c == cls else rest) for c in CLASSES},
        suspicion=p if cls != "NILM" else 1 - p,
    )


def seed_dashboard(database: Database, results_dir: Path) -> Seeded:
    """Champions, a training decision and four slides: an HSIL result with overlay and gallery crops on disk, a
    NILM result, a queued slide and a failed one. Written through the query layer, as the flows write them."""
    names = ("hsil-case.png", "nilm-case.png", "waiting.svs", "broken.ndpi")
    with database.session() as s:
        s1 = queries.register_model_version(
            s,
            stage=ModelStage.STAGE1,
            name="s1-seed",
            architecture="cnn20plus",
            file_path="/m/s1",
            sha256="1" * 64,
            metrics={"f1": 0.9, "recall": 0.92},
        )
        s2 = queries.register_model_version(
            s,
            stage=ModelStage.STAGE2,
            name="s2-seed",
            architecture="resnet18",
            file_path="/m/s2",
            sha256="2" * 64,
            metrics={"macro_f1": 0.8, "accuracy": 0.85},
        )
        run = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={"epochs": 2})
        queries.finish_training_run(
            s,
            run.id,
            status=TrainingStatus.SUCCEEDED,
            history=[{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}],
            metrics={"macro_f1": 0.8},
            model_version_id=s2.id,
            decision=Decision.PROMOTED,
            reason="first model of its stage",
        )
        ids = [
            queries.claim_scan(s, sha256=f"{i + 1:064x}", original_name=name, size_bytes=1000 + i).slide.id
            for i, name in enumerate(names)
        ]
        for slide_id, name in zip(ids, names, strict=True):
            queries.mark_stored(s, slide_id, stored_path=f"/store/{name}", format=name.rsplit(".", 1)[1])
        queries.start_processing(s, ids[3], flow_run_id="0b7e1a52-0000-4000-8000-000000000001")
        queries.fail_slide(s, ids[3], "unreadable tile at level 0")

        for slide_id, main_class, score in ((ids[0], "HSIL", 0.93), (ids[1], "NILM", 0.08)):
            folder = results_dir / f"slide-{slide_id:08d}" / f"s1-{s1.id}-s2-{s2.id}"
            cells = [
                _cell(100 + 60 * i, 120 + 40 * i, main_class if i < 4 else "NILM", 0.95 - 0.05 * i) for i in range(8)
            ]
            gallery = []
            for rank, cell in enumerate([c for c in cells if c.predicted_class == main_class][:3], start=1):
                file = f"gallery/{rank:03d}.png"
                _png(folder / file, (64, 64), (200, 120, 150))
                gallery.append(
                    {
                        "class": main_class,
                        "rank": rank,
                        "cell_index": cells.index(cell),
                        "x": cell.x,
                        "y": cell.y,
                        "probability": cell.probabilities[main_class],
                        "suspicion": cell.suspicion,
                        "file": file,
                    }
                )
            _png(folder / "overlay.png", (320, 240), (230, 220, 225))
            counts = {c: sum(cell.predicted_class == c for cell in cells) for c in CLASSES}
            queries.store_analysis(
                s,
                slide_id=slide_id,
                stage1_model_id=s1.id,
                stage2_model_id=s2.id,
                cells=cells,
                summary=queries.SummaryRecord(
                    category=main_class,
                    adequacy="satisfactory",
                    abnormal_score=score,
                    cell_count=len(cells),
                    class_counts=counts,
                    details={
                        "results_dir": str(folder),
                        "overlay": "overlay.png",
                        "overlay_scale": 1.0,
                        "scan_kind": "field",
                        "gallery": gallery,
                        "category_reason": f"{main_class}: 4 cells graded {main_class} or worse with probability "
                        ">= 0.9 (rule: >= 3)",
                    },
                ),
                duration_s=2.5,
            )
    return Seeded(
        url=database_url(database),
        hsil_slide=ids[0],
        nilm_slide=ids[1],
        queued_slide=ids[2],
        failed_slide=ids[3],
        names=names,
    )


def open_page(app: AppTest, name: str) -> AppTest:
    """Ask for one of the app's pages on the next run, as the sidebar's link does.

    ``AppTest.switch_page`` resolves only file pages; the app's pages are callables, which Streamlit identifies by
    the hash of their ``url_path`` (``st.Page._script_hash``), so the request names that hash.
    """
    app._page_hash = calc_hash(name)
    return app.run()


@pytest.fixture
def seeded(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    """A seeded database that the app (run by AppTest in this process) reads through ``PAPSCREEN_*``."""
    found = seed_dashboard(database, tmp_path / "results")
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", found.url)
    monkeypatch.setenv("PAPSCREEN_RESULTS_DIR", str(tmp_path / "results"))
    return found


def _run(app: AppTest | None = None) -> AppTest:
    return run_ok(app or AppTest.from_file(str(APP_PATH), default_timeout=60))


def _texts(app: AppTest) -> str:
    """Every markdown, caption, title and header text of the page, sidebar included."""
    parts = [*app.markdown, *app.caption, *app.title, *app.header, *app.subheader, *app.info, *app.warning]
    return "\n".join(str(p.value) for p in parts)


def test_default_page_is_the_overview(seeded: Seeded) -> None:
    app = _run()

    assert not app.error, [e.value for e in app.error]
    assert app.title[0].value == "Overview"
    assert app.metric, "the overview shows its figures"
    assert "Open access" in app.sidebar.info[0].value


@pytest.mark.parametrize(
    ("page", "heading"),
    [("worklist", "Worklist"), ("slide", "Slide review"), ("models", "Models"), ("intake", "Intake")],
    ids=["worklist", "slide", "models", "intake"],
)
def test_each_page_renders(seeded: Seeded, page: str, heading: str) -> None:
    app = _run()
    assert_ok(open_page(app, page))

    assert not app.error, [e.value for e in app.error]
    headings = [h.value for h in (*app.title, *app.header)]
    assert heading in headings
    assert "Overview" not in headings


def test_worklist_lists_the_seeded_slides_and_a_row_opens_its_slide(seeded: Seeded) -> None:
    app = open_page(_run(), "worklist")

    table = app.dataframe[0].value
    assert list(table["name"])[:2] == ["hsil-case.png", "nilm-case.png"]
    pending = app.dataframe[1].value
    assert set(pending["name"]) == {"waiting.svs", "broken.ndpi"}


def test_slide_page_shows_the_slide_opened_in_the_session(seeded: Seeded) -> None:
    app = _run()
    app.session_state["papscreen_slide_id"] = seeded.hsil_slide
    open_page(app, "slide")

    assert not app.error, [e.value for e in app.error]
    assert app.title[0].value == "hsil-case.png"
    assert {m.label: m.value for m in app.metric}["Category"] == "HSIL"
    assert app.query_params.get("slide") in (str(seeded.hsil_slide), [str(seeded.hsil_slide)])


def test_a_page_error_is_one_message_under_the_shell(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: object) -> None:
        raise PapscreenError("the results folder /r is gone: restore it, then reload")

    monkeypatch.setattr(overview, "render", broken)
    app = _run()

    assert [e.value for e in app.error] == ["the results folder /r is gone: restore it, then reload"]
    assert "Open access" in app.sidebar.info[0].value  # the shell (sidebar, navigation) is still there


def test_a_database_failure_inside_a_page_is_one_message(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(ctx: object) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(overview, "render", unreachable)
    app = _run()

    assert len(app.error) == 1
    assert "cannot read the database" in app.error[0].value
    assert "connection refused" in app.error[0].value


def test_unmigrated_database_shows_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", f"sqlite:///{tmp_path / 'never-migrated.db'}")
    app = _run()

    assert len(app.error) == 1
    assert "run `papscreen db upgrade`" in app.error[0].value
    assert "schema empty" in app.error[0].value
    assert not app.metric
    assert not app.dataframe


def test_unreachable_database_shows_an_error_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", f"postgresql+psycopg2://nobody@127.0.0.1:{port}/papscreen")
    app = _run()

    assert len(app.error) == 1
    assert "cannot reach the database" in app.error[0].value
    assert "papscreen db upgrade" in app.error[0].value


def test_bad_settings_show_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_DEVICE", "tpu")
    app = _run()

    assert "invalid settings" in app.error[0].value
    assert not app.metric


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        ("http://prefect.lab:4200/", {"PREFECT_API_URL": "http://other:4200/api"}, "http://prefect.lab:4200"),
        (None, {"PREFECT_API_URL": "http://prefect.lab:4300/api"}, "http://prefect.lab:4300"),
        (None, {"PREFECT_API_URL": "https://lab.example/prefect/api/"}, "https://lab.example/prefect"),
        (None, {}, "http://127.0.0.1:4201"),
    ],
    ids=["setting-wins", "api-url", "api-url-behind-proxy", "local-server"],
)
def test_prefect_ui_url(configured: str | None, environ: dict[str, str], expected: str) -> None:
    settings = Settings(home="/tmp/lab", dashboard={"prefect_ui_url": configured}, orchestration={"prefect_port": 4201})

    assert dashboard_app.prefect_ui_url(settings, environ) == expected


def test_pages_are_the_six_in_order() -> None:
    assert [name for name, *_ in dashboard_app.PAGES] == ["overview", "worklist", "slide", "models", "intake", "audit"]
    assert dashboard_app.DEFAULT_PAGE == "overview"
