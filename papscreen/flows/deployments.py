"""papscreen's deployments, and serving them all from one process (``papscreen up``).

The same five deployments are declared in ``prefect.yaml`` for work pools (Docker Compose, several hosts);
here they are built in Python so one machine can run everything with ``serve`` and no work pool.
"""

from __future__ import annotations

import contextvars
import threading

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from papscreen.config import Settings
from papscreen.db.database import Database
from papscreen.flows.analyze import analyze_slide_flow
from papscreen.flows.intake import intake_flow
from papscreen.flows.limits import ensure_compute_limit
from papscreen.flows.rescore import rescore_flow
from papscreen.flows.retrain import retrain_flow
from papscreen.flows.validate import validate_flow
from papscreen.flows.watcher import IntakeWatcher, deployment_starter

__all__ = ["DEPLOYMENT_NAMES", "build_deployments", "serve_all", "start_watcher"]

DEPLOYMENT_NAMES = ("intake", "analyze-slide", "retrain", "validate", "rescore")

ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
"""A scheduled run that finds the previous one still going is cancelled, never stacked."""


def build_deployments(settings: Settings, config: str | None = None) -> list[RunnerDeployment]:
    """The five deployments with the configured schedules; ``config`` is passed to every run."""
    params = {"config": config}
    schedules = settings.schedules
    return [
        intake_flow.to_deployment(
            name="intake",
            parameters=params,
            concurrency_limit=ONE_AT_A_TIME,
            description="Ingest each new scan once and start the analyses; started by the intake watcher when there "
            "is work (no schedule: an idle lab has no intake runs).",
        ),
        analyze_slide_flow.to_deployment(
            name="analyze-slide", parameters=params, description="Analyse one slide with the champion models."
        ),
        retrain_flow.to_deployment(
            name="retrain",
            schedule=Cron(schedules.retrain_cron, timezone=schedules.timezone),
            parameters=params,
            concurrency_limit=ONE_AT_A_TIME,
            description="Retrain both stages; promote a challenger only through the validation gate.",
        ),
        validate_flow.to_deployment(
            name="validate",
            schedule=Cron(schedules.validate_cron, timezone=schedules.timezone),
            parameters=params,
            concurrency_limit=ONE_AT_A_TIME,
            description="Re-evaluate the champions and check recent slides for drift.",
        ),
        rescore_flow.to_deployment(
            name="rescore", parameters=params, description="Re-analyse slides scored by older models."
        ),
    ]


def serve_all(settings: Settings, config: str | None = None) -> None:
    """Serve every deployment from this process until interrupted (Ctrl-C, SIGTERM), with the intake watcher.

    The watcher (:mod:`papscreen.flows.watcher`) runs in a thread beside the runner: its first look is at once,
    so what arrived while the service was down is taken now.
    """
    ensure_compute_limit(settings)
    deployments = build_deployments(settings, config)
    deployments[0].apply()  # the watcher may start an intake run before serve() has registered the rest
    stop = threading.Event()
    watcher = start_watcher(settings, config, stop)
    try:
        serve(*deployments, print_starting_message=False, pause_on_shutdown=False)
    finally:
        stop.set()
        watcher.join(timeout=settings.schedules.intake_interval_seconds + 5)


def start_watcher(settings: Settings, config: str | None, stop: threading.Event) -> threading.Thread:
    """Watch the intake in a daemon thread until ``stop`` is set; returns the thread."""
    start, unfinished = deployment_starter(config)
    watcher = IntakeWatcher(settings, Database(settings.database_url), start, unfinished)
    context = contextvars.copy_context()  # Prefect's settings (the API's address) live in context variables
    thread = threading.Thread(target=context.run, args=(watcher.run, stop), name="intake-watcher", daemon=True)
    thread.start()
    return thread
