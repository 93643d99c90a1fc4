"""The intake flow: one pass over the watched folder, then the analyses of what is queued.

Each pass first requeues the analyses of dead workers (``recover``); then, holding the intake lock (one pass
ingests at a time, whether started by the service, ``papscreen intake --once`` or another host), it settles
the claims an interrupted pass left and ingests every settled file (claim once, check, move to the store or
quarantine); then it starts an analysis for every queued slide: in this process
(``orchestration.dispatch = "inline"``, one host) or as runs of the analyze-slide deployment
(``"deployment"``), which the workers of the work pool share.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from papscreen.config import Settings
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage, utcnow
from papscreen.flows.analyze import analyze_slide_flow
from papscreen.flows.limits import ensure_compute_limit
from papscreen.intake import Arrival
from papscreen.tasks.intake import (
    IngestOutcome,
    IntakePass,
    ingest_pass,
    ingest_task,
    recover_task,
    settle_claims_task,
)
from papscreen.tasks.retry import retry_options
from papscreen.tasks.runtime import open_run

__all__ = ["dispatch_analyses", "ingest_one", "intake_flow", "queued_slides_task"]


@task(name="queued slides", cache_policy=NO_CACHE)
def queued_slides_task(settings: Settings, database: Database) -> list[tuple[int, str]]:
    """Queued, stored slides to analyse (``[]`` while a stage has no champion: they wait, logged)."""
    with database.session() as session:
        ready = all(queries.get_champion(session, stage) for stage in ModelStage)
        ids = queries.dispatchable_slides(
            session,
            now=utcnow(),
            redispatch_after_s=settings.orchestration.lease_seconds,
            limit=settings.orchestration.intake_batch,
        )
        if ids and not ready:
            get_run_logger().warning("%d slides wait for champion models (train or import both stages)", len(ids))
            return []
        names = queries.slide_names(session, ids)
        return [(i, names[i]) for i in ids]


def dispatch_analyses(
    slides: list[tuple[int, str]], settings: Settings, database: Database, config: str | None
) -> list[Any]:
    """Start the analyses: as deployment runs (returned at once) or here, one after the other."""
    if settings.orchestration.dispatch == "deployment":
        started = []
        for slide_id, name in slides:
            run = run_deployment(
                settings.orchestration.analyze_deployment,
                parameters={"slide_id": slide_id, "slide_name": name, "config": config},
                timeout=0,
                idempotency_key=f"analyze-slide-{slide_id}-{utcnow():%Y%m%d%H%M}",
            )
            with database.session() as session:
                queries.mark_dispatched(session, slide_id, str(run.id))
            started.append({"slide_id": slide_id, "flow_run_id": str(run.id)})
        return started
    return [analyze_slide_flow(slide_id=i, slide_name=name, config=config) for i, name in slides]


def ingest_one(arrival: Arrival, settings: Settings, database: Database, retrying: dict[str, Any]) -> IngestOutcome:
    """One file's ingest task; if it still fails after its retries, that file waits and the pass goes on."""
    state = ingest_task.with_options(**retrying)(arrival, settings, database, return_state=True)
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    detail = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else state.message or state.name
    get_run_logger().warning("%s left in the intake for the next pass: %s", arrival.name, detail)
    return IngestOutcome(arrival.name, "retry", detail=f"{detail[:500]}; left in place for the next pass")


@flow(name="intake", log_prints=True)
def intake_flow(config: str | None = None, analyze: bool = True, dispatch: str | None = None) -> dict[str, Any]:
    """One pass: recover, ingest every settled file, start the analyses of queued slides.

    Args:
        config: optional settings file (else ``PAPSCREEN_*`` variables and defaults).
        analyze: start analyses after ingesting (``False``: ingest only).
        dispatch: ``inline`` or ``deployment``, overriding ``orchestration.dispatch`` for this pass
            (``papscreen intake --once`` analyses inline and waits for the results).

    Returns:
        Counts per outcome (``queued``, ``duplicate``, ``quarantined``, ``waiting``, ``retry``), the files still
        being written, those waiting for their next retry, and the analyses started.
    """
    logger = get_run_logger()
    with open_run(config) as (settings, database):
        if dispatch is not None:
            settings.orchestration.dispatch = dispatch  # type: ignore[assignment]
        settings.ensure_folders()
        ensure_compute_limit(settings)
        retrying = retry_options(settings)
        requeued = recover_task.with_options(**retrying)(settings, database)
        passed = ingest_pass(
            settings,
            database,
            ingest=lambda arrival: ingest_one(arrival, settings, database, retrying),
            settle=lambda: settle_claims_task.with_options(**retrying)(settings, database),
        )
        if passed is None:
            logger.info("another intake pass is ingesting: this one leaves the files to it")
            passed = IntakePass(outcomes=[], waiting=[], settled=[])
        counts = Counter(o.status for o in passed.outcomes)
        if passed.waiting:
            logger.info("%d files are still being written: %s", len(passed.waiting), [p.name for p in passed.waiting])
        if passed.deferred:
            logger.info("%d files wait for their next retry: %s", len(passed.deferred), passed.deferred)
        analyses: list[Any] = []
        if analyze:
            slides = queued_slides_task.with_options(**retrying)(settings, database)
            analyses = dispatch_analyses(slides, settings, database, config)
        logger.info("intake pass: %s; %d analyses", dict(counts) or "nothing new", len(analyses))
        return {
            "counts": dict(counts),
            "outcomes": [o.__dict__ for o in passed.outcomes],
            "still_writing": [str(p) for p in passed.waiting],
            "retry_later": passed.deferred,
            "recovered": {"requeued": requeued, "settled": passed.settled},
            "analyses": analyses,
        }
