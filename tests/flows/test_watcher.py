"""The intake watcher: a run only when there is work, never two at once, no Cancelled runs, nothing when idle."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import FlowRun

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.flows.deployments import build_deployments
from papscreen.flows.watcher import IntakeWatcher, deployment_starter
from papscreen.tasks.intake import look_for_work


class FakePrefect:
    """Records the runs the watcher starts; a test says when each has finished."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: set[str] = set()

    def start(self, reason: str) -> str:
        self.started.append(reason)
        return f"run-{len(self.started)}"

    def unfinished(self, run_id: str) -> bool:
        return run_id not in self.finished

    def finish_all(self) -> None:
        self.finished |= {f"run-{i}" for i in range(1, len(self.started) + 1)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    settings = Settings(home=tmp_path / "home", database_url=database.url.render_as_string(hide_password=False))
    settings.ensure_folders()
    return settings


def _arrive(settings: Settings, name: str) -> Path:
    """A scan the scanner has finished writing (its ``.done`` marker beside it)."""
    path = settings.intake_dir / name
    path.write_bytes(b"\x89PNG not really")
    (settings.intake_dir / f"{name}.done").touch()
    return path


def test_an_idle_lab_starts_no_run(settings: Settings, database: Database) -> None:
    prefect = FakePrefect()
    watcher = IntakeWatcher(settings, database, prefect.start, prefect.unfinished)
    assert not look_for_work(settings, database)
    assert [watcher.tick() for _ in range(50)] == [None] * 50
    assert prefect.started == []


def test_a_new_scan_starts_one_run_and_none_while_it_is_going(settings: Settings, database: Database) -> None:
    prefect, clock = FakePrefect(), Clock()
    watcher = IntakeWatcher(settings, database, prefect.start, prefect.unfinished, clock=clock)
    (settings.intake_dir / "half-written.svs").write_bytes(b"...")  # no marker, just written: not settled yet
    assert watcher.tick() is None

    _arrive(settings, "a.png")
    assert watcher.tick() == "run-1"
    assert prefect.started == ["1 new scan"]
    _arrive(settings, "b.png")
    assert [watcher.tick() for _ in range(5)] == [None] * 5  # run-1 still going: never a second one beside it

    prefect.finish_all()  # run-1 ended without clearing the folder (say the database was away): same files again
    assert watcher.tick() == "run-2"  # b.png is new to it: a new pass at once
    assert prefect.started[-1] == "2 new scans"
    prefect.finish_all()
    assert watcher.tick() is None  # the same two again: left for the sweep, not retried every tick
    clock.now += settings.schedules.intake_sweep_seconds
    assert watcher.tick() == "run-3"

    for name in ("a.png", "b.png"):  # a pass took them (to the store)
        (settings.intake_dir / name).unlink()
        (settings.intake_dir / f"{name}.done").unlink()
    prefect.finish_all()
    assert watcher.tick() is None
    assert len(prefect.started) == 3


def test_queued_slides_and_interrupted_analyses_are_work(settings: Settings, database: Database) -> None:
    with database.session() as session:
        slide_id = queries.claim_scan(session, sha256="a" * 64, original_name="x.png", size_bytes=10).slide.id
        queries.mark_stored(session, slide_id, stored_path="/store/x.png", format="png", width=10, height=10)
    work = look_for_work(settings, database)
    assert (work.files, work.queued, work.interrupted) == ((), (slide_id,), ())
    assert work.describe() == "1 queued slide"

    with database.session() as session:
        queries.begin_analysis(session, slide_id, owner="elsewhere:1", lease_seconds=-1)  # a lease already run out
    work = look_for_work(settings, database)
    assert (work.queued, work.interrupted) == ((), (slide_id,))
    assert work.describe() == "1 interrupted analysis"


def _intake_runs() -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["intake"])))


@pytest.mark.usefixtures("prefect_api")
def test_watching_the_real_intake_deployment_leaves_no_cancelled_runs(settings: Settings, database: Database) -> None:
    intake = build_deployments(settings)[0]
    intake.apply()
    earlier = {r.id for r in _intake_runs()}  # the Prefect server is shared by the session's tests
    start, unfinished = deployment_starter(config=None)
    watcher = IntakeWatcher(settings, database, start, unfinished)

    assert [watcher.tick() for _ in range(10)] == [None] * 10  # idle: no run at all
    _arrive(settings, "a.png")
    run_id = watcher.tick()
    assert run_id is not None
    assert unfinished(run_id)  # scheduled; no worker serves it in this test
    _arrive(settings, "b.png")
    assert [watcher.tick() for _ in range(10)] == [None] * 10

    runs = [r for r in _intake_runs() if r.id not in earlier]
    assert [str(r.id) for r in runs] == [run_id]
    assert [r.state.name for r in runs] == ["Scheduled"]  # one run, nothing Cancelled
    assert "watcher" in runs[0].tags


class StopAfter(threading.Event):
    """A stop signal that says "stop" after ``looks`` waits, without waiting."""

    def __init__(self, looks: int) -> None:
        super().__init__()
        self.looks, self.waits = looks, 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return self.waits >= self.looks


def test_a_failing_look_is_logged_once_and_its_end_too(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = iter([RuntimeError("deployment not found")] * 3 + ["run-1"])

    def start(_reason: str) -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    _arrive(settings, "a.png")
    watcher = IntakeWatcher(settings, database, start, lambda _run: True)
    with caplog.at_level(logging.INFO, logger="papscreen.flows.watcher"):
        watcher.run(StopAfter(looks=6))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "the intake watcher cannot look (RuntimeError: deployment not found); it keeps trying",
        "the intake watcher looks again",
    ]
