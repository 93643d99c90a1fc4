"""``papscreen demo``: from nothing to analysed demo scans, safe to repeat, and the full service it starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import select
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.config import load_settings
from papscreen.datasets.demo_fields import demo_field_paths
from papscreen.datasets.layout import read_dataset
from papscreen.db import migrate, queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage, Slide, SlideStatus
from papscreen.models.shipped import shipped_card
from tests.flows.service import write_field_scan

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.usefixtures("prefect_api")
def test_demo_once_sets_up_with_the_shipped_models_analyses_real_fields_then_keeps_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PAPSCREEN_DEVICE", "cpu")
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--scale", "small", "--once"])
    assert result.exit_code == 0, result.output
    settings = load_settings()
    assert all(path.is_dir() for path in settings.folders().values())
    assert read_dataset(settings.data_dir / "DB_4").counts()["train"]["HSIL"] == 50
    database = Database(settings.database_url)
    try:
        assert migrate.current_revision(database) == migrate.head_revision(database)
        with database.session() as session:
            for stage in ModelStage:  # the shipped models trained on real CRIC fields, not a synthetic demo model
                assert queries.get_champion(session, stage).name == shipped_card(stage.value).name  # type: ignore[union-attr]
            slides = session.scalars(select(Slide)).all()
            assert sorted(Path(s.original_name).name for s in slides) == sorted(p.name for p in demo_field_paths())
            assert {s.status for s in slides} == {SlideStatus.DONE}
            assert all(s.cell_count for s in slides)

        again = runner.invoke(app, ["demo", "--scale", "small", "--once"])
        assert again.exit_code == 0, again.output
        assert "kept" in again.output
        with database.session() as session:  # the same scans again: recorded as duplicates, not analysed twice
            counts = queries.status_counts(session)
            assert counts[SlideStatus.DONE] == 4
            assert counts[SlideStatus.DUPLICATE] == 4
    finally:
        database.dispose()


def _wait(condition, what: str, process: subprocess.Popen, log: Path, deadline_s: float = 300.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"papscreen demo exited ({process.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def test_demo_runs_the_service_which_analyses_a_dropped_scan_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAPSCREEN_", "PREFECT_API"))}
    env.update(
        PAPSCREEN_HOME=str(home),
        PAPSCREEN_DEVICE="cpu",
        PAPSCREEN_SCHEDULES__INTAKE_INTERVAL_SECONDS="2",
        PAPSCREEN_INTAKE__SETTLE_SECONDS="1",
        PAPSCREEN_ORCHESTRATION__PREFECT_PORT=str(_free_port()),
        # the intake starts each analysis as a run of the served analyze-slide deployment (as workers would)
        PAPSCREEN_ORCHESTRATION__DISPATCH="deployment",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    log = tmp_path / "demo.log"
    papscreen = Path(sys.executable).with_name("papscreen")
    started = time.monotonic()
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [str(papscreen), "demo", "--no-dashboard"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        settings = load_settings(home=home)
        database = Database(settings.database_url)

        def done_slides() -> list[Slide]:
            if not settings.home.joinpath("papscreen.db").exists():
                return []
            try:
                with database.session() as session:
                    return [s for s in queries.list_slides(session) if s.status == SlideStatus.DONE]
            except Exception:  # noqa: BLE001 - the demo is still creating the database
                return []

        _wait(lambda: len(done_slides()) >= 4, "the 4 demo scans to be analysed by the served intake", demo, log)
        write_field_scan(settings.intake_dir / "late arrival.png", seed=4242, hsil=3, settled=False)  # waits to settle
        t0 = time.monotonic()
        late = _wait(
            lambda: [s for s in done_slides() if s.original_name == "late arrival.png"], "the late scan", demo, log
        )[0]
        print(f"late arrival: dropped -> result in the database in {time.monotonic() - t0:.1f} s")
        assert late.cell_count > 0
        assert late.flow_run_id  # the analyze-slide run that produced it
        assert "Prefect UI: http://127.0.0.1:" in log.read_text()
        database.dispose()
        # The watcher started intake runs only when there was work: none cancelled, no run every 2 s.
        api = f"http://127.0.0.1:{env['PAPSCREEN_ORCHESTRATION__PREFECT_PORT']}/api"
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["intake"])))
        states = Counter(r.state.name for r in runs if r.state is not None)
        print(f"intake runs: {dict(states)} in {time.monotonic() - started:.0f} s of service")
        assert "Cancelled" not in states
        assert 1 <= len(runs) <= 6
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
    assert code == 0, log.read_text()[-4000:]
