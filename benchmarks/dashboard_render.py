"""How long each dashboard page takes to draw with a lab's worth of slides in the database.

    .venv/bin/python benchmarks/dashboard_render.py                 # 1,000 slides, 40 cells each, SQLite
    .venv/bin/python benchmarks/dashboard_render.py --slides 5000 --database-url postgresql+psycopg2://...

Seeds ``--slides`` analysed slides (through the query layer, as the service stores them: claim, store, analysis
with ``--cells`` cells and a 30-cell gallery, a review on every tenth) plus a few queued, failed and quarantined
ones, then draws every page with Streamlit's AppTest as the signed-in pathologist would see it: the whole page
script, its database reads and its tables, in this process (what the server spends before the browser paints).
Each page is drawn ``--repeats`` times on a cold cache (cleared before each draw: a first visit, or a visit
after the cache's 5 s) and as many times warm (a rerun within the cache's life). It prints the median seconds per
page and its ratio to the target (1.5 s per page, issue 17), and the machine.

``--browser`` also serves the dashboard (``papscreen dashboard``'s launcher, open access on 127.0.0.1) and opens
each page in headless Chromium (``--chromium``, default /usr/bin/chromium): the seconds from navigation until the
page's own content is drawn (its main table, metric or heading), first visit and again, as a person waits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.testing.v1 import AppTest

from papscreen.db import migrate, queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage
from papscreen.imaging.image_io import write_rgb
from papscreen.models.device import describe_machine, resolve_device

TARGET_S = 1.5
PAGES = ("overview", "worklist", "slide", "models", "intake", "audit")
CLASSES = ("NILM", "LSIL", "HSIL", "SCC")


def page_script(page: str, url: str, slide_id: int) -> None:
    """One page, as app.py draws it for a signed-in pathologist (AppTest runs this function's source alone)."""
    import importlib

    import streamlit as st

    from papscreen.config import load_settings
    from papscreen.dashboard.context import DashboardContext
    from papscreen.db.database import Database

    @st.cache_resource
    def database_for(url: str) -> Database:
        return Database(url)

    if page == "slide":
        st.query_params["slide"] = str(slide_id)
    module = importlib.import_module(f"papscreen.dashboard.pages.{page}")
    ctx = DashboardContext(load_settings(), database_for(url), "drp", True, None, role="pathologist")
    module.render(ctx)


def seed(database: Database, slides: int, cells: int, results: Path) -> int:
    """Seed the database; returns the most suspicious slide's id (the slide page's subject)."""
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    with database.session() as s:
        one = queries.register_model_version(
            s, stage=ModelStage.STAGE1, name="s1-bench", architecture="cnn20plus", file_path="/m/1", sha256="1" * 64
        )
        two = queries.register_model_version(
            s, stage=ModelStage.STAGE2, name="s2-bench", architecture="resnet18", file_path="/m/2", sha256="2" * 64
        )
        queries.promote(s, one.id, actor="bench")
        queries.promote(s, two.id, actor="bench")
        models = (one.id, two.id)
    top, top_score = 0, -1.0
    for i in range(slides):
        score = float(rng.beta(1.2, 4.0))
        slide_id = _analysed_slide(database, i, score, cells, models, rng, results, crop)
        if score > top_score:
            top, top_score = slide_id, score
    with database.session() as s:
        for i in range(20):  # the queue and the intake page's lists
            claim = queries.claim_scan(s, sha256=f"{i:064x}", original_name=f"waiting-{i}.png", size_bytes=10)
            if i % 4 == 1:
                queries.quarantine_slide(
                    s, claim.slide.id, reason="file is empty (0 bytes)", quarantined_path=f"/q/waiting-{i}.png"
                )
    return top


def _analysed_slide(
    database: Database,
    i: int,
    score: float,
    cells: int,
    models: tuple[int, int],
    rng: np.random.Generator,
    results: Path,
    crop: np.ndarray,
) -> int:
    probabilities = rng.dirichlet([6, 1, 1, 1], size=cells)
    records = []
    for k, p in enumerate(probabilities):
        x, y = float(100 + 37 * k), float(200 + 11 * k)
        records.append(
            queries.CellRecord(
                x=x, y=y, box_x0=int(x) - 48, box_y0=int(y) - 48, box_x1=int(x) + 48, box_y1=int(y) + 48,
                stage1_score=0.9, predicted_class=CLASSES[int(p.argmax())],
                probabilities=dict(zip(CLASSES, map(float, p), strict=True)), suspicion=float(1 - p[0]),
            )
        )  # fmt: skip
    folder = results / f"slide-{i:05d}"
    order = np.argsort([-r.suspicion for r in records])[:30]
    gallery = []
    for rank, k in enumerate(order, start=1):
        file = f"gallery/{rank:03d}.png"
        if i < 3:  # crops on disk for the slides a page shows; the rest are never opened here
            write_rgb(folder / file, crop)
        r = records[k]
        gallery.append({
            "class": r.predicted_class, "rank": rank, "cell_index": int(k), "x": r.x, "y": r.y,
            "probability": max(r.probabilities.values()), "suspicion": r.suspicion, "file": file,
        })  # fmt: skip
    if i < 3:
        write_rgb(folder / "overlay.png", np.full((512, 512, 3), 230, np.uint8))
    category = "HSIL" if score > 0.6 else "LSIL" if score > 0.35 else "NILM"
    with database.session() as s:
        slide_id = queries.claim_scan(s, sha256=f"{i + 10**6:064x}", original_name=f"slide-{i:05d}.svs", size_bytes=1)
        slide_id = slide_id.slide.id
        queries.mark_stored(s, slide_id, stored_path=f"/store/{i}.svs", format="tiff", width=40000, height=30000)
        queries.start_processing(s, slide_id, flow_run_id=f"run-{i}")
        queries.store_analysis(
            s, slide_id=slide_id, stage1_model_id=models[0], stage2_model_id=models[1], cells=records,
            summary=queries.SummaryRecord(
                category=category, adequacy="satisfactory", abnormal_score=score, cell_count=cells,
                class_counts={c: sum(r.predicted_class == c for r in records) for c in CLASSES},
                details={"results_dir": str(folder), "overlay": "overlay.png", "overlay_scale": 0.0128,
                         "scan_kind": "slide", "gallery": gallery, "category_reason": f"{category}: seeded"},
            ),
            duration_s=30.0, flow_run_id=f"run-{i}",
        )  # fmt: skip
        if i % 10 == 0:
            queries.mark_slide_reviewed(s, slide_id, reviewer="ann")
    return slide_id


def draw(page: str, url: str, slide_id: int, *, cold: bool) -> float:
    """Seconds for one draw of ``page`` (a fresh AppTest: a new browser session)."""
    if cold:
        st.cache_data.clear()
    kwargs = {"page": page, "url": url, "slide_id": slide_id}
    app = AppTest.from_function(page_script, kwargs=kwargs, default_timeout=120)
    started = time.perf_counter()
    app.run()
    seconds = time.perf_counter() - started
    if app.exception:
        raise SystemExit(f"{page}: {app.exception[0].message}")
    return seconds


BROWSER_READY = {
    "overview": "[data-testid='stMetric']",
    "worklist": "[data-testid='stDataFrame']",
    "slide": ".st-key-gallery [data-testid='stHeading']",
    "models": "[data-testid='stTab']",
    "intake": "[data-testid='stDataFrame']",
    "audit": "[data-testid='stDataFrame']",
}
"""What shows that each page has drawn its content (not just the app's frame)."""


def browser_draws(url: str, slide_id: int, chromium: str, repeats: int) -> dict[str, tuple[float, float]]:
    """(first visit, median of the next ``repeats``) seconds per page in headless Chromium."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    out: dict[str, tuple[float, float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        for name in PAGES:
            address = f"{url}/{name}" + (f"?slide={slide_id}" if name == "slide" else "")
            times = []
            for _ in range(repeats + 1):
                started = time.perf_counter()
                page.goto(address)
                page.locator(BROWSER_READY[name]).first.wait_for(state="visible", timeout=120_000)
                times.append(time.perf_counter() - started)
            out[name] = (times[0], statistics.median(times[1:]))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slides", type=int, default=1000)
    parser.add_argument("--cells", type=int, default=40, help="cells stored per slide")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--browser", action="store_true", help="also time each page in headless Chromium")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="papscreen-render-"))
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    os.environ.update(PAPSCREEN_HOME=str(work / "home"), PAPSCREEN_DATABASE_URL=url)
    database = Database(url)
    migrate.upgrade(database)
    tick = time.perf_counter()
    slide_id = seed(database, args.slides, args.cells, work / "results")
    print(f"machine: {describe_machine(resolve_device('cpu'))}")
    print(f"seeded {args.slides} analysed slides x {args.cells} cells in {time.perf_counter() - tick:.0f} s ({url})")
    for page in PAGES:
        draw(page, url, slide_id, cold=True)  # imports and the first connection, not counted
    print(f"\n| page | cold draw (median of {args.repeats}) | warm draw | cold / target {TARGET_S} s |")
    print("|---|---|---|---|")
    for page in PAGES:
        cold = statistics.median(draw(page, url, slide_id, cold=True) for _ in range(args.repeats))
        warm = statistics.median(draw(page, url, slide_id, cold=False) for _ in range(args.repeats))
        print(f"| {page} | {cold:.2f} s | {warm:.2f} s | {cold / TARGET_S:.2f} |")
    if args.browser:
        _in_browser(args, url, slide_id)
    database.dispose()


def _in_browser(args: argparse.Namespace, url: str, slide_id: int) -> None:
    from papscreen.config import load_settings
    from papscreen.dashboard.launch import start_dashboard, stop_process

    port = 8765
    server = start_dashboard(load_settings(), port=port)
    try:
        draws = browser_draws(f"http://127.0.0.1:{port}", slide_id, args.chromium, args.repeats)
    finally:
        stop_process(server)
    header = f"first / target {TARGET_S} s"
    print(f"\n| page in Chromium | first visit | again (median of {args.repeats}) | {header} |")
    print("|---|---|---|---|")
    for page, (first, again) in draws.items():
        print(f"| {page} | {first:.2f} s | {again:.2f} s | {first / TARGET_S:.2f} |")


if __name__ == "__main__":
    main()
