"""Watching the intake folder without a flow run every few seconds: one long-lived watcher starts passes on need.

An interval schedule made Prefect start an intake run every 10 s, about 8,600 a day, mostly empty, and cancelled
those that found the previous one still going ("Deployment concurrency limit reached"): an admin saw a wall of
Cancelled runs. The watcher instead looks every ``schedules.intake_interval_seconds`` at what a pass would find
(:func:`~papscreen.tasks.intake.look_for_work`: settled files, queued slides, interrupted analyses, unsettled
claims; no flow run, no lock) and starts one intake run when there is something, never while its previous run
is still scheduled or running. Work a pass could not clear (a file waiting for its retry, slides waiting for a
champion) is not retried every tick: the same work starts a new pass only after
``schedules.intake_sweep_seconds``. So an idle lab sees no runs at all, and each run in the Prefect UI did
something.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prefect import get_client
from prefect.deployments import run_deployment

from papscreen.config import Settings
from papscreen.db.database import Database
from papscreen.tasks.intake import IntakeWork, look_for_work

__all__ = ["IntakeWatcher", "deployment_starter"]

logger = logging.getLogger(__name__)

INTAKE_DEPLOYMENT = "intake/intake"


def deployment_starter(config: str | None) -> tuple[Callable[[str], str], Callable[[str], bool]]:
    """Start the intake deployment (returns the run id) and ask whether a run is still unfinished, via Prefect."""

    def start(reason: str) -> str:
        run = run_deployment(INTAKE_DEPLOYMENT, parameters={"config": config}, timeout=0, tags=["watcher"])
        logger.info("intake run %s started: %s", run.name, reason)
        return str(run.id)

    def unfinished(run_id: str) -> bool:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        return state is not None and not state.is_final()

    return start, unfinished


@dataclass
class IntakeWatcher:
    """Starts an intake pass when there is work and none is under way; :meth:`tick` is one look.

    Attributes:
        settings: the service's settings (intake folder, intervals).
        database: where queued slides, leases and claims are read.
        start: starts a pass, given the reason; returns its run id.
        unfinished: whether a run (by id) is still scheduled, pending or running.
        clock: seconds, monotonic (a test passes its own).
    """

    settings: Settings
    database: Database
    start: Callable[[str], str]
    unfinished: Callable[[str], bool]
    clock: Callable[[], float] = time.monotonic
    _run_id: str | None = field(default=None, init=False)
    _started_for: IntakeWork | None = field(default=None, init=False)
    _started_at: float = field(default=0.0, init=False)

    def tick(self) -> str | None:
        """Look once; returns the id of the run it started, or None."""
        if self._run_id is not None and self.unfinished(self._run_id):
            return None
        work = look_for_work(self.settings, self.database)
        if not work:
            self._started_for = None
            return None
        sweep = self.settings.schedules.intake_sweep_seconds
        if work == self._started_for and self.clock() - self._started_at < sweep:
            return None  # the last pass saw exactly this and could not clear it: wait for the sweep
        self._run_id = self.start(work.describe())
        self._started_for, self._started_at = work, self.clock()
        return self._run_id

    def run(self, stop: threading.Event) -> None:
        """Tick every ``schedules.intake_interval_seconds`` until ``stop`` is set.

        A failing tick (database or Prefect API away, intake deployment missing) is logged once, not every tick,
        and its end is logged too.
        """
        interval = self.settings.schedules.intake_interval_seconds
        failing: str | None = None
        while True:
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - a database or API hiccup must not end the watching
                problem = f"{type(e).__name__}: {e}"
                if problem != failing:
                    logger.warning("the intake watcher cannot look (%s); it keeps trying", problem)
                failing = problem
            else:
                if failing is not None:
                    logger.info("the intake watcher looks again")
                failing = None
            if stop.wait(interval):
                return
