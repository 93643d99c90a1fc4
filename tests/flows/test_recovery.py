"""The service survives its failures: a worker killed mid-analysis, and PostgreSQL restarted during a run.

Both run the real flows against the session's Prefect API. The killed worker is a real ``papscreen intake
--once`` process; PostgreSQL is a private server of this module's own (the shared one serves every other test).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlalchemy import func, select

from papscreen.datasets.synthetic import SlidePlan, write_synthetic_slide
from papscreen.db import migrate, queries
from papscreen.db.database import Database
from papscreen.db.schema import Analysis, AuditEvent, Cell, Slide, SlideStatus
from papscreen.flows.analyze import analyze_slide_flow
from papscreen.flows.intake import intake_flow
from papscreen.tasks.analysis import MODEL_CACHE
from tests.flows.private_postgres import PrivatePostgres, find_pg_bin
from tests.flows.service import configure_service, mark_settled, register_champions

pytestmark = pytest.mark.slow

DEADLINE_S = 240.0


def _write_pyramid(path: Path) -> Path:
    """A whole-slide pyramid big enough that its analysis takes seconds (time to act while it runs)."""
    tissue = tuple((c, r) for c in range(3) for r in range(2))
    plan = SlidePlan(6144, 4096, tissue_blocks=tissue, composition={"NILM": 40}, planted={"HSIL": 12}, seed=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_synthetic_slide(path, plan, downsamples=(1, 4))
    return mark_settled(path)


def _wait_for(condition: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S, *, child=None) -> Any:
    """Poll a condition until it holds (a deadline, never a fixed sleep); fail with what was awaited."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if child is not None and child.poll() is not None:
            pytest.fail(f"the worker exited (code {child.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _slide(database: Database, slide_id: int | None = None) -> Slide | None:
    with database.session() as session:
        if slide_id is None:
            return session.scalars(select(Slide).order_by(Slide.id)).first()
        return session.get(Slide, slide_id)


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    papscreen = Path(sys.executable).with_name("papscreen")
    with log.open("ab") as out:
        return subprocess.Popen([str(papscreen), "intake", "--once"], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.usefixtures("prefect_api")
def test_worker_killed_mid_analysis_then_restarted_completes_without_duplicate_cells(
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    trained_model_folders: tuple[Path, Path],
    prefect_api: str,
) -> None:
    settings = configure_service(monkeypatch, database)
    register_champions(database, trained_model_folders)
    _write_pyramid(settings.intake_dir / "slide.tif")
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = tmp_path / "worker.log"

    worker = _worker(env, log)
    slide = _wait_for(
        lambda: (s := _slide(database)) is not None and s.status == SlideStatus.PROCESSING and s.compute_lease_id and s,
        "the analysis to start",
        child=worker,
    )
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=30) == -signal.SIGKILL
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Analysis)) == 0
        assert session.get(Slide, slide.id).status == SlideStatus.PROCESSING  # nobody told the database

    restarted = _worker(env, log)
    assert restarted.wait(timeout=DEADLINE_S) == 0, log.read_text()[-3000:]

    with database.session() as session:
        done = session.get(Slide, slide.id)
        assert done.status == SlideStatus.DONE, done.error
        assert done.attempts == 2
        assert done.compute_lease_id is None
        analyses = session.scalars(select(Analysis).where(Analysis.slide_id == slide.id)).all()
        assert len(analyses) == 1
        cells = session.scalar(select(func.count()).select_from(Cell).where(Cell.slide_id == slide.id))
        assert cells == done.cell_count > 0
        requeued = session.scalars(select(AuditEvent).where(AuditEvent.action == "slide.requeued")).all()
        assert any("is gone" in event.details["reason"] for event in requeued)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server this module may stop and start."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="papscreen-pg-"))
    server = PrivatePostgres(root, bin_dir).init()
    server.start()
    yield server
    try:
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _retrying_task_runs(flow_run_id: str | None = None) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])) if flow_run_id else None
        )
    return [r.name for r in runs if r.state and r.state.name in ("AwaitingRetry", "Retrying")]


@pytest.mark.usefixtures("prefect_api")
def test_postgresql_restarted_during_a_run_tasks_retry_and_complete(
    private_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
    trained_model_folders: tuple[Path, Path],
) -> None:
    url = private_postgres.create_database("restart_test")
    database = Database(url)
    migrate.upgrade(database)
    settings = configure_service(
        monkeypatch,
        database,
        PAPSCREEN_ORCHESTRATION__TASK_RETRIES="10",
        PAPSCREEN_ORCHESTRATION__RETRY_DELAYS_SECONDS="[2]",
    )
    register_champions(database, trained_model_folders)
    MODEL_CACHE.clear()
    _write_pyramid(settings.intake_dir / "slide.tif")
    ingested = intake_flow(analyze=False)
    assert ingested["counts"] == {"queued": 1}
    slide_id = ingested["outcomes"][0]["slide_id"]

    outcome: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(analyze_slide_flow(slide_id=slide_id, slide_name="slide.tif")), daemon=True
    )
    runner.start()
    _wait_for(lambda: (s := _slide(database, slide_id)) is not None and s.compute_lease_id, "the analysis to start")
    database.dispose()
    private_postgres.stop()  # mid-analysis: the result cannot be stored until the server is back
    try:
        retrying = _wait_for(_retrying_task_runs, "a task to fail on the stopped server and wait for its retry")
    finally:
        private_postgres.start()
    runner.join(timeout=DEADLINE_S)
    assert not runner.is_alive()
    assert any(name.startswith("store") for name in retrying), retrying
    assert outcome["status"] == "done"
    with database.session() as session:
        slide = session.get(Slide, slide_id)
        assert slide.status == SlideStatus.DONE
        assert slide.attempts == 1
        assert len(queries.cells_of_slide(session, slide_id)) == slide.cell_count > 0
    database.dispose()
