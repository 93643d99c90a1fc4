"""papscreen's deployments, and serving them all from one process (``papscreen up``).

The same five deployments are declared in ``prefect.yaml`` for work pools (Docker Compose, several hosts);
here they are built in Python so one machine can run everything with ``serve`` and no work pool.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments import run_deployment
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval

from papscreen.config import Settings
from papscreen.flows.analyze import analyze_slide_flow
from papscreen.flows.intake import intake_flow
from papscreen.flows.limits import ensure_compute_limit
from papscreen.flows.rescore import rescore_flow
from papscreen.flows.retrain import retrain_flow
from papscreen.flows.validate import validate_flow

__all__ = ["DEPLOYMENT_NAMES", "build_deployments", "serve_all"]

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
            schedule=Interval(schedules.intake_interval_seconds),
            parameters=params,
            concurrency_limit=ONE_AT_A_TIME,
            description="Poll the intake folder, ingest each new scan once, start the analyses.",
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


def serve_all(settings: Settings, config: str | None = None, *, intake_now: bool = True) -> None:
    """Serve every deployment from this process until interrupted (Ctrl-C, SIGTERM).

    ``intake_now``: start an intake pass at once (what arrived while the service was down is taken now, not at
    the schedule's next slot, which a fresh deployment may place up to an interval away).
    """
    ensure_compute_limit(settings)
    deployments = build_deployments(settings, config)
    if intake_now:
        deployments[0].apply()
        run_deployment("intake/intake", timeout=0, parameters={"config": config})
    serve(*deployments, print_starting_message=False, pause_on_shutdown=False)
