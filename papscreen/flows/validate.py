"""The nightly validation flow: re-score the champions, keep the figures over time, and watch for drift.

After retraining, each champion is scored on its validation split (stage 1 on DB_3, stage 2 on DB_4) and stage 2
also on a fixed reference set (``settings.validation.reference_dir``, a DB_4 folder whose validation split never
changes), so a slow decline shows in the history even when no model changed. Drift compares what the champions
said about the last ``drift_window_slides`` analysed slides (predicted classes, abnormal scores) with what the
stage-2 champion says about DB_4's validation crops (:mod:`papscreen.models.drift`); a flagged drift is logged as
a warning and recorded. Nothing is recorded before both stages have a champion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from papscreen.config import Settings
from papscreen.db.database import Database
from papscreen.db.queries.validation import recent_predictions, record_validation_run
from papscreen.models.drift import check_drift
from papscreen.models.evaluation import Evaluation
from papscreen.tasks.retry import retry_options
from papscreen.tasks.runtime import current_flow_run_id, open_run
from papscreen.tasks.training import DATASET_OF_STAGE, champion_folder, evaluate_model_folder, predicted_distribution

__all__ = ["validate_flow"]


@task(name="recent predictions", cache_policy=NO_CACHE)
def load_recent_predictions(database: Database, last_n_slides: int) -> tuple[dict[str, int], list[float], int]:
    """Predicted classes and abnormal scores of the cells of the newest analysed slides."""
    with database.session() as session:
        counts, suspicion, slides = recent_predictions(session, last_n_slides)
    return counts, [float(s) for s in suspicion], slides


@task(name="record validation run", cache_policy=NO_CACHE)
def save_validation_run(database: Database, **fields: Any) -> int:
    """Store the night's metrics and drift check; returns the validation run's id."""
    with database.session() as session:
        return record_validation_run(session, **fields).id


def _has_validation(root: Path) -> bool:
    return (root / "validation").is_dir() or (root / "val").is_dir() or (root / "valid").is_dir()


@flow(name="validate")
def validate_flow(config: str | None = None) -> dict[str, Any]:
    """Re-evaluate both champions, record the metrics and the drift check.

    Args:
        config: a TOML settings file (``PAPSCREEN_*`` variables apply too).

    Returns:
        ``recorded`` (False when there are no champions yet, with ``reason``), ``validation_run_id``,
        ``metrics`` (macro-F1 per dataset), ``drift_flagged``, ``drift_reason`` and ``notes``.
    """
    logger = get_run_logger()
    with open_run(config) as (settings, database):
        return _validate(settings, database, logger)


def _validate(settings: Settings, database: Database, logger: Any) -> dict[str, Any]:
    db = retry_options(settings)
    champions = {stage: champion_folder.with_options(**db)(database, stage) for stage in DATASET_OF_STAGE}
    missing = [stage for stage, champion in champions.items() if champion is None]
    if missing:
        reason = f"no champion for {' and '.join(missing)} yet: train or register one; nothing recorded"
        logger.info(reason)
        return {"recorded": False, "reason": reason}
    notes: list[str] = []
    metrics: dict[str, Any] = {}
    stage2_validation: Evaluation | None = None
    datasets = [(stage, name, settings.data_dir / name) for stage, name in DATASET_OF_STAGE.items()]  # type: ignore[operator]
    datasets.append(("stage2", "reference", settings.validation.reference_dir))  # type: ignore[arg-type]
    for stage, name, root in datasets:
        if not _has_validation(root):
            notes.append(f"{name}: no validation split at {root}; not scored")
            continue
        _, folder = champions[stage]  # type: ignore[misc]
        evaluation = evaluate_model_folder(settings, stage, folder, root)
        metrics[name] = evaluation.metrics.to_dict() | {"stage": stage, "dataset": str(root)}
        if name == "DB_4":
            stage2_validation = evaluation

    recent_classes, recent_suspicion, slides = load_recent_predictions.with_options(**db)(
        database, settings.validation.drift_window_slides
    )
    if stage2_validation is None:
        drift: dict[str, Any] = {"flagged": False, "reason": "no DB_4 validation split to compare recent slides with"}
        flagged = False
    else:
        classes, suspicion = predicted_distribution(stage2_validation, stage2_validation.metrics.class_names)
        report = check_drift(classes, recent_classes, suspicion, recent_suspicion, settings.validation.drift_threshold)
        drift, flagged = report.to_dict() | {"recent_slides": slides}, report.flagged
    if flagged:
        logger.warning("drift flagged over the last %s slides: %s", slides, drift["reason"])
    run_id = save_validation_run.with_options(**db)(
        database,
        stage1_model_id=champions["stage1"][0],  # type: ignore[index]
        stage2_model_id=champions["stage2"][0],  # type: ignore[index]
        metrics=metrics,
        drift=drift,
        drift_flagged=flagged,
        notes="; ".join(notes) or None,
        flow_run_id=current_flow_run_id(),
    )
    logger.info("validation run %s recorded: %s", run_id, drift["reason"])
    return {
        "recorded": True,
        "validation_run_id": run_id,
        "metrics": {name: m["macro_f1"] for name, m in metrics.items()},
        "drift_flagged": flagged,
        "drift_reason": drift["reason"],
        "recent_slides": slides,
        "notes": notes,
    }
