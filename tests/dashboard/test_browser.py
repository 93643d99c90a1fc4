"""The dashboard in a real headless Chromium: sign in, open the worklist, open a slide from it, see its overlay and
gallery images drawn, correct a cell, and find the correction in the database.

Needs Chromium at /usr/bin/chromium (``.ci/run`` installs it when missing). Without it the test fails and says how
to install it; ``PAPSCREEN_TEST_SKIP_BROWSER=1`` (a laptop without Chromium, never CI) turns that into a skip.
Screenshots of each step go to ``PAPSCREEN_TEST_ARTIFACTS`` (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pypdf import PdfReader

from papscreen.config import load_settings
from papscreen.dashboard.auth import add_user
from papscreen.dashboard.launch import start_dashboard, stop_process
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Cell
from tests.dashboard.test_app import Seeded, seed_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SKIP_ENV = "PAPSCREEN_TEST_SKIP_BROWSER"
ARTIFACTS_ENV = "PAPSCREEN_TEST_ARTIFACTS"
SERVE_DEADLINE_S = 60.0
UI_TIMEOUT_MS = 30_000
PASSWORD = "correct horse battery"

# Every <img> of Streamlit's st.image inside an element, loaded and decoded (naturalWidth > 0).
IMAGES_DRAWN = """(element) => {
    const images = [...element.querySelectorAll('img')];
    return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
}"""


def _chromium() -> Path:
    """The Chromium binary, or a failure (a skip only when the developer opted out) saying how to get it."""
    if CHROMIUM.is_file():
        return CHROMIUM
    message = (
        f"Chromium is not installed at {CHROMIUM}: install it (`apt-get install -y chromium`, as `.ci/run` does) "
        f"or set {SKIP_ENV}=1 to skip the browser test (never in CI)"
    )
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(message)
    pytest.fail(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_until_serving(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + SERVE_DEADLINE_S
    while not _serving(port):
        if process.poll() is not None:
            pytest.fail(f"the dashboard exited with code {process.returncode} before serving")
        if time.monotonic() > deadline:
            pytest.fail(f"the dashboard did not serve within {SERVE_DEADLINE_S:.0f} s")
        time.sleep(0.2)  # polling interval of a condition with a deadline, not a fixed wait


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def seeded_sqlite(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Seeded, Database]]:
    """A seeded SQLite database and a users file (ann), named to the dashboard through ``PAPSCREEN_*``."""
    path = tmp_path / "papscreen.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    seeded = seed_dashboard(database, tmp_path / "results")
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", seeded.url)
    monkeypatch.setenv("PAPSCREEN_DASHBOARD__REFRESH_SECONDS", "600")  # no live refresh in the middle of a click
    users = load_settings().dashboard.users_file
    add_user(users, "ann", PASSWORD, display_name="Ann Smith", rounds=4)  # type: ignore[arg-type]
    add_user(users, "drp", PASSWORD, display_name="Dr P", role="pathologist", rounds=4)  # type: ignore[arg-type]
    yield seeded, database
    database.dispose()


@pytest.fixture
def dashboard_url(seeded_sqlite: tuple[Seeded, Database]) -> Iterator[str]:
    """A dashboard server (``papscreen dashboard``'s own launcher) on a free port, stopped afterwards."""
    port = _free_port()
    process = start_dashboard(load_settings(), port=port, env=dict(os.environ))
    try:
        _wait_until_serving(process, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _sign_in(page: Page, artifacts: Path, name: str = "ann") -> None:
    form = page.get_by_test_id("stForm")
    expect(form).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(form.get_by_role("textbox", name="Name")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
    expect(page.get_by_test_id("stSidebar")).to_have_count(0)
    page.screenshot(path=artifacts / "1-sign-in.png")
    form.get_by_role("textbox", name="Name").fill(name)
    form.get_by_role("textbox", name="Password").fill(PASSWORD)
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("stSidebar").get_by_text("Signed in as")).to_be_visible(timeout=UI_TIMEOUT_MS)


def _click_first_row(page: Page, table_index: int = 0) -> None:
    """Select the first data row of a Streamlit dataframe (a canvas grid: click its row-selection cell)."""
    grid = page.get_by_test_id("stDataFrame").nth(table_index)
    expect(grid).to_be_visible(timeout=UI_TIMEOUT_MS)
    box = grid.bounding_box()
    assert box is not None
    row_height = 35  # Streamlit's default row height; the header row has the same
    page.mouse.click(box["x"] + 15, box["y"] + row_height + row_height / 2)


def test_review_a_slide_in_a_real_browser(
    browser: Browser, dashboard_url: str, seeded_sqlite: tuple[Seeded, Database], artifacts: Path
) -> None:
    seeded, database = seeded_sqlite
    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)

    # Nothing but the sign-in form before signing in, even at a page's own address.
    page.goto(f"{dashboard_url}/worklist")
    _sign_in(page, artifacts)

    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()  # the page the address asked for
    expect(page.get_by_test_id("stAppDeployButton")).to_have_count(0)  # staff get no "Deploy" or developer menu
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    page.screenshot(path=artifacts / "2-worklist-after-sign-in.png", full_page=True)

    _click_first_row(page)  # the most suspicious slide: hsil-case.png
    expect(page.get_by_role("heading", name="hsil-case.png")).to_be_visible()
    # The verdict is explained in words beside the evidence (item 1); markdown draws ">=" as a sign.
    why = "Why: HSIL: 4 cells graded HSIL or worse with probability \u2265 0.9 (rule: \u2265 3)"
    expect(page.get_by_text(why)).to_be_visible()
    assert f"slide={seeded.hsil_slide}" in page.url

    overlay = page.get_by_test_id("stImage").filter(has_text="Overlay")
    expect(overlay).to_have_count(1)
    overlay.scroll_into_view_if_needed()
    page.wait_for_function(f"(el) => ({IMAGES_DRAWN})(el)", arg=overlay.element_handle())
    gallery = page.locator(".st-key-gallery")
    expect(gallery.get_by_role("heading", name="Gallery: the 3 most suspicious cells")).to_be_visible()
    crops = gallery.get_by_test_id("stImage")
    expect(crops).to_have_count(3)
    expect(crops.first).to_contain_text(" HSIL 0.95")  # the most suspicious first, called by its cell id
    gallery.scroll_into_view_if_needed()
    page.wait_for_function(f"(el) => ({IMAGES_DRAWN})(el)", arg=gallery.element_handle())
    page.screenshot(path=artifacts / "3-slide.png", full_page=True)

    review = page.get_by_test_id("stRadio")
    review.scroll_into_view_if_needed()
    review.get_by_text("LSIL", exact=True).click()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("corrected from HSIL to LSIL, recorded as ann")).to_be_visible()
    page.screenshot(path=artifacts / "4-corrected.png", full_page=True)

    with database.session() as session:
        corrections = queries.reviewed_cells(session)
        assert [(c.slide_id, c.predicted_class, c.label) for c in corrections] == [(seeded.hsil_slide, "HSIL", "LSIL")]
        cell = session.get(Cell, corrections[0].cell_id)
        assert cell is not None
        assert cell.reviewer == "ann"

    # The keyboard alone: J opens the next cell, A accepts the model's class for it.
    page.get_by_role("heading", name="Review").click()  # focus on the page, not in a form field
    page.keyboard.press("j")
    expect(page.get_by_test_id("stSelectbox").first.locator("input")).to_have_value("#2 HSIL 0.90 at (160, 160)")
    page.keyboard.press("a")
    expect(page.get_by_text("Cell #2 confirmed as HSIL, recorded as ann")).to_be_visible()

    # Sign-out: ann (a cytotechnologist) has seen the whole gallery; she signs the slide out as NILM and
    # downloads the final report.
    signout = page.locator(".st-key-signout")
    signout.scroll_into_view_if_needed()
    choice = signout.get_by_test_id("stSelectbox").locator("input")
    choice.click()
    choice.fill("NILM")
    choice.press("Enter")
    expect(choice).to_have_value("NILM")
    sign = signout.get_by_role("button", name="Sign out", exact=True)
    expect(sign).to_be_visible()  # the rerun for NILM is drawn (a screener signs NILM out alone) before typing
    comment = signout.get_by_role("textbox")
    comment.fill("reactive changes only")
    comment.press("Control+Enter")  # Streamlit's way to commit a text area
    sign.click()
    expect(page.get_by_text(f"Slide #{seeded.hsil_slide} signed out as NILM by ann.")).to_be_visible()
    with page.expect_download() as download:
        signout.get_by_test_id("stDownloadButton").filter(has_text="Report (PDF)").get_by_role("button").click()
    pdf = PdfReader(download.value.path())
    text = "\n".join(p.extract_text() for p in pdf.pages)
    assert "FINAL (signed out)" in text
    assert "NILM by ann, cytotechnologist" in text
    assert "comment: reactive changes only" in text
    page.screenshot(path=artifacts / "5-signed-out.png", full_page=True)

    # The sign-in holds across a reload and in a second tab (a signed session cookie); signing out ends both.
    signed_in = page.get_by_test_id("stSidebar").get_by_text("Signed in as")
    page.reload()
    expect(signed_in).to_be_visible(timeout=UI_TIMEOUT_MS)
    second = context.new_page()
    second.goto(f"{dashboard_url}/worklist")
    expect(second.get_by_test_id("stSidebar").get_by_text("Signed in as")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    expect(page.get_by_test_id("stForm")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.reload()
    expect(page.get_by_test_id("stForm")).to_be_visible(timeout=UI_TIMEOUT_MS)
    second.reload()
    expect(second.get_by_test_id("stForm")).to_be_visible(timeout=UI_TIMEOUT_MS)
    context.close()

    # A pathologist reads the audit log: ann's sign-in, her review and her sign-out are there, a wrong password too.
    audit = browser.new_page(viewport={"width": 1600, "height": 1200})
    audit.set_default_timeout(UI_TIMEOUT_MS)
    audit.goto(f"{dashboard_url}/audit")
    form = audit.get_by_test_id("stForm")
    expect(form).to_be_visible(timeout=UI_TIMEOUT_MS)
    form.get_by_role("textbox", name="Name").fill("drp")
    form.get_by_role("textbox", name="Password").fill("not the password")
    form.get_by_role("button", name="Sign in").click()
    expect(audit.get_by_text("wrong name or password")).to_be_visible(timeout=UI_TIMEOUT_MS)
    _sign_in(audit, artifacts, "drp")
    expect(audit.get_by_role("heading", name="Audit log")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(audit.get_by_test_id("stDataFrame")).to_be_visible()
    audit.screenshot(path=artifacts / "6-audit.png", full_page=True)
    with database.session() as session:
        seen = {(e.action, e.actor) for e in queries.list_events(session, limit=1000)}
    assert {("user.signed_in", "ann"), ("slide.signed_out", "ann"), ("user.sign_in_failed", "drp")} <= seen
    with audit.expect_download() as download:
        audit.get_by_test_id("stDownloadButton").get_by_role("button").click()
    exported = Path(download.value.path()).read_text()
    assert "slide.signed_out,slide #" in exported
    assert "user.sign_in_failed" in exported
