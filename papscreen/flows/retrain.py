"""The nightly retraining flow: train challengers, compare them with the champions, promote only the better.

For each stage (stage 1 on DB_3; stage 2 on DB_4 plus the reviewer-corrected cells):

1. fingerprint the inputs (dataset, reviewed cells, training code and recipe);
2. claim a training run: skipped (with the reason recorded) when a run of the stage is still running, or when
   the fingerprints equal those of the last succeeded run and ``force`` is off; otherwise a ``running`` run is
   committed before training, so a crash leaves a trace;
3. train the challenger into a new model folder;
4. score challenger and champion on the same validation split;
5. register the challenger (never champion by itself), apply the gate (:mod:`papscreen.models.promotion`),
   promote or reject it with the reason, and close the run with metrics, history, decision and reason.

Analyses read the champion from the database for each slide, so a promotion takes effect without a restart. A
stage that fails (a missing DB_3, a crash in training) is recorded as a failed run with its error; the other
stage still runs, and the flow then ends Failed with the first error's message.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from papscreen.config import Settings
from papscreen.datasets.provenance import dataset_provenance
from papscreen.db.database import Database
from papscreen.errors import PapscreenError
from papscreen.tasks.retry import retry_options
from papscreen.tasks.runtime import current_flow_run_id, open_run
from papscreen.tasks.training import (
    DATASET_OF_STAGE,
    card_data_provenance,
    champion_folder,
    claim_training_run,
    decide_and_record,
    evaluate_model_folder,
    fail_training_run,
    fingerprint_inputs,
    stage_recipe,
    train_stage1_model,
    train_stage2_model,
)

__all__ = ["STAGES", "RetrainError", "retrain_flow"]

STAGES = ("stage1", "stage2")


class RetrainError(PapscreenError):
    """A stage could not be retrained; the message says which and why (the run is recorded as failed)."""


def _retrain_stage(settings: Settings, database: Database, stage: str, force: bool) -> dict[str, Any]:
    """One stage from fingerprints to decision; any failure closes the run as failed and is re-raised."""
    logger = get_run_logger()
    db = retry_options(settings)
    run_id: int | None = None
    parameters: dict[str, Any] = {"recipe": stage_recipe(settings, stage), "force": force}
    try:
        inputs = fingerprint_inputs.with_options(**db)(settings, database, stage)
        parameters = inputs.parameters() | {"force": force}
        claim = claim_training_run.with_options(**db)(
            database,
            inputs,
            stale_run_hours=settings.retrain.stale_run_hours,
            force=force,
            flow_run_id=current_flow_run_id(),
        )
        if claim.skipped:
            logger.info("%s: skipped: %s", stage, claim.reason)
            return {"status": "skipped", "decision": "skipped", "reason": claim.reason, "training_run_id": claim.run_id}
        run_id = claim.run_id
        train = train_stage1_model if stage == "stage1" else train_stage2_model
        trained = train(settings, inputs)
        challenger = evaluate_model_folder(settings, stage, trained.folder, inputs.dataset_root)
        current = champion_folder.with_options(**db)(database, stage)
        champion, champion_data = None, None
        if current is not None:
            evaluation = evaluate_model_folder(settings, stage, current[1], inputs.dataset_root)
            champion, champion_data = (current[0], evaluation.metrics.to_dict()), card_data_provenance(current[1])
        outcome = decide_and_record.with_options(**db)(
            settings,
            database,
            stage,
            run_id,
            trained,
            challenger.metrics.to_dict(),
            champion,
            challenger_data=dataset_provenance(inputs.dataset_root),
            champion_data=champion_data,
        )
    except Exception as e:  # noqa: BLE001 - whatever ended the stage, its run must be closed with the error
        message = str(e) if isinstance(e, PapscreenError) else f"{type(e).__name__}: {e}"
        failed_id = fail_training_run.with_options(**db)(database, stage, run_id, message, parameters)
        logger.error("%s: training run %s failed: %s", stage, failed_id, message)
        return {"status": "failed", "decision": None, "reason": message, "training_run_id": failed_id, "error": e}
    logger.info("%s: %s (run %s): %s", stage, outcome.decision.value, outcome.run_id, outcome.reason)
    return {
        "status": "succeeded",
        "decision": outcome.decision.value,
        "reason": outcome.reason,
        "training_run_id": outcome.run_id,
        "model_version_id": outcome.model_version_id,
        "baseline_model_version_id": outcome.baseline_model_version_id,
        "model_folder": str(trained.folder),
        "reviewed_crops": trained.reviewed_crops,
    }


@flow(name="retrain", log_prints=False)
def retrain_flow(config: str | None = None, stages: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Retrain the stages, gate each challenger against its champion, and record everything.

    Args:
        config: a TOML settings file (``PAPSCREEN_*`` variables apply too).
        stages: ``stage1`` and/or ``stage2`` (default both).
        force: retrain even when data, reviewed cells and code are unchanged since the last successful run.

    Returns:
        Per stage: ``status`` (succeeded, skipped, failed), ``decision``, ``reason``, ``training_run_id`` and,
        after training, ``model_version_id``, ``baseline_model_version_id``, ``model_folder``, ``reviewed_crops``.

    Raises:
        RetrainError: a stage failed (its run is recorded as failed); raised after the other stages ran.
    """
    chosen = list(stages or STAGES)
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise RetrainError(f"unknown stage {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    summary: dict[str, Any] = {}
    with open_run(config) as (settings, database):
        for stage in chosen:
            summary[stage] = _retrain_stage(settings, database, stage, force)
    failures = {stage: result.pop("error") for stage, result in summary.items() if "error" in result}
    if failures:
        stage, error = next(iter(failures.items()))
        raise RetrainError(
            f"{stage} ({DATASET_OF_STAGE[stage]}) retraining failed: {summary[stage]['reason']}"
            + (f"; {len(failures) - 1} more stage failed" if len(failures) > 1 else "")
        ) from error
    return summary
