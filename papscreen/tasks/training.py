"""Prefect tasks of nightly retraining: thin wrappers over the science, one step each as the UI shows it.

Each task does one thing the retrain flow composes: fingerprint what training would read, claim a training
run (refusing to overlap a running one, or to repeat a run whose inputs did not change), train a stage into a
new model folder, score a model folder on a dataset's validation split, and register and judge the challenger.
The tasks take the flow's settings and database and return plain data; nothing is cached between runs
(``NO_CACHE``): every night must look at the data as it is. Tasks that touch the database retry transient
failures when the flow applies :func:`~papscreen.tasks.retry.retry_options`.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from papscreen.config import Settings
from papscreen.datasets.fingerprint import fingerprint_index, short_fingerprint
from papscreen.datasets.layout import DatasetIndex, read_dataset
from papscreen.datasets.reviewed import combined_db4, write_reviewed_crops
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.reviews import ReviewedCell
from papscreen.db.queries.training import running_training_run
from papscreen.db.schema import Decision, ModelStage, TrainingStatus, utcnow
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import image_size
from papscreen.models.card import read_card
from papscreen.models.checkpoints import load_weights, model_folder_name, resolve_card_path
from papscreen.models.code_fingerprint import code_fingerprint
from papscreen.models.device import resolve_device
from papscreen.models.evaluation import Evaluation, evaluate_stage1, evaluate_stage2, write_evaluation
from papscreen.models.promotion import decide_promotion
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier
from papscreen.models.train_stage1 import train_stage1
from papscreen.models.train_stage2 import train_stage2
from papscreen.tasks.registry import register_saved_model

__all__ = [
    "DATASET_OF_STAGE",
    "Claim",
    "Outcome",
    "TrainedModel",
    "TrainingInputs",
    "card_data_provenance",
    "champion_folder",
    "claim_training_run",
    "decide_and_record",
    "evaluate_model_folder",
    "fail_training_run",
    "fingerprint_inputs",
    "predicted_distribution",
    "reviewed_fingerprint",
    "stage_recipe",
    "train_stage1_model",
    "train_stage2_model",
]

DATASET_OF_STAGE = {"stage1": "DB_3", "stage2": "DB_4"}
"""The folder under ``settings.data_dir`` each stage trains and is validated on."""

ACTOR = "retrain"
"""Who the audit log says registered, promoted or rejected a retrained model."""


@dataclass(frozen=True)
class TrainingInputs:
    """What a stage's training would read, fingerprinted before anything is trained.

    Attributes:
        stage: ``stage1`` or ``stage2``.
        dataset_root: the DB_3 or DB_4 folder.
        dataset_fingerprint: the dataset's content fingerprint.
        reviewed: the reviewer-corrected cells stage 2 adds (empty for stage 1 or when switched off).
        reviewed_fingerprint: fingerprint of those cells (ids, labels, positions, scans).
        combined_fingerprint: what the training run records: the dataset's, and for stage 2 the reviewed cells'.
        code_fingerprint: the training code and recipe (:func:`~papscreen.models.code_fingerprint.code_fingerprint`).
        recipe: the training settings of the stage.
    """

    stage: str
    dataset_root: Path
    dataset_fingerprint: str
    reviewed: tuple[ReviewedCell, ...]
    reviewed_fingerprint: str | None
    combined_fingerprint: str
    code_fingerprint: str
    recipe: dict[str, Any]

    def parameters(self) -> dict[str, Any]:
        """What the training run's ``parameters`` keep: recipe, data and fingerprints."""
        return {
            "recipe": self.recipe,
            "dataset": str(self.dataset_root),
            "fingerprints": {
                DATASET_OF_STAGE[self.stage]: self.dataset_fingerprint,
                "reviewed_cells": self.reviewed_fingerprint,
                "code": self.code_fingerprint,
            },
            "reviewed_cells": len(self.reviewed),
        }

    def describe(self) -> str:
        """The inputs in words, for a skip reason: ``DB_4 fingerprint 0a1b…, reviewed cells 3 and training code``."""
        name = DATASET_OF_STAGE[self.stage]
        parts = f"{name} fingerprint {short_fingerprint(self.dataset_fingerprint)}…"
        if self.stage == "stage2":
            parts += f", reviewed cells {len(self.reviewed)}"
        return f"{parts} and training code"


@dataclass(frozen=True)
class Claim:
    """A training run opened for this flow run (``run_id``), or the skipped run recorded instead and why."""

    run_id: int
    skipped: bool
    reason: str | None = None


@dataclass(frozen=True)
class TrainedModel:
    """A challenger saved into its model folder, with what training reported."""

    folder: Path
    history: list[dict[str, float]]
    training: dict[str, Any]
    dataset_fingerprint: str
    reviewed_crops: dict[str, int] = field(default_factory=dict)
    reviewed_skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What the gate decided for one training run."""

    run_id: int
    model_version_id: int | None
    baseline_model_version_id: int | None
    decision: Decision
    reason: str


def stage_recipe(settings: Settings, stage: str) -> dict[str, Any]:
    """The settings that shape a stage's model: part of the code fingerprint and of the run's parameters.

    Examples:
        >>> from papscreen.config import Settings
        >>> stage_recipe(Settings(home="/tmp/lab"), "stage1")["architecture"]
        'cnn20plus'
    """
    r = settings.retrain
    if stage == "stage1":
        return {"architecture": r.stage1_architecture, "epochs": r.stage1_epochs, "seed": r.seed}
    return {
        "architecture": r.stage2_architecture,
        "mode": r.stage2_mode,
        "epochs": r.stage2_epochs,
        "input_size": r.stage2_input_size,
        "crop_size": r.stage2_crop_size,
        "pretrained": r.stage2_pretrained,
        "seed": r.seed,
        "include_reviewed_cells": r.include_reviewed_cells,
        "batch_size": settings.batch.stage2_training,
    }


def reviewed_fingerprint(cells: Sequence[ReviewedCell]) -> str:
    """sha256 over the corrected cells' ids, labels, positions and scans: a new or changed correction retrains.

    Examples:
        >>> len(reviewed_fingerprint([]))
        64
    """
    digest = hashlib.sha256(b"papscreen-reviewed-cells/1\n")
    for c in sorted(cells, key=lambda c: c.cell_id):
        digest.update(f"{c.cell_id}\t{c.label}\t{c.x:.2f}\t{c.y:.2f}\t{c.stored_path}\n".encode())
    return digest.hexdigest()


def _dataset(settings: Settings, stage: str) -> DatasetIndex:
    root = settings.data_dir / DATASET_OF_STAGE[stage]  # type: ignore[operator]
    if not root.is_dir():
        raise DatasetError(
            root,
            f"no {DATASET_OF_STAGE[stage]} folder: put the {stage} training data there "
            f"(train/ and validation/) or set PAPSCREEN_DATA_DIR",
        )
    return read_dataset(root, extra_label_map=settings.labels.extra_label_map)


@task(name="fingerprint training inputs", cache_policy=NO_CACHE)
def fingerprint_inputs(settings: Settings, database: Database, stage: str) -> TrainingInputs:
    """Fingerprint the dataset, the reviewed cells (stage 2) and the training code of a stage.

    Raises:
        DatasetError: the stage's DB_3 or DB_4 folder is missing or unreadable (the message names it).
    """
    index = _dataset(settings, stage)
    dataset_fp = fingerprint_index(index)
    recipe = stage_recipe(settings, stage)
    reviewed: tuple[ReviewedCell, ...] = ()
    reviewed_fp = None
    combined = dataset_fp
    if stage == "stage2" and settings.retrain.include_reviewed_cells:
        with database.session() as session:
            reviewed = tuple(
                queries.reviewed_cells(session, signed_out_only=settings.retrain.reviewed_cells_need_signout)
            )
        reviewed_fp = reviewed_fingerprint(reviewed)
        combined = hashlib.sha256(f"{dataset_fp}\n{reviewed_fp}".encode()).hexdigest()
    return TrainingInputs(
        stage=stage,
        dataset_root=index.root,
        dataset_fingerprint=dataset_fp,
        reviewed=reviewed,
        reviewed_fingerprint=reviewed_fp,
        combined_fingerprint=combined,
        code_fingerprint=code_fingerprint(recipe),
        recipe=recipe,
    )


def _skipped(database: Database, stage: ModelStage, parameters: dict[str, Any], reason: str, **fps: Any) -> Claim:
    with database.session() as session:
        run = queries.start_training_run(session, stage=stage, parameters=parameters, **fps)
        queries.finish_training_run(
            session, run.id, status=TrainingStatus.SKIPPED, decision=Decision.SKIPPED, reason=reason
        )
        return Claim(run.id, True, reason)


@task(name="claim training run", cache_policy=NO_CACHE)
def claim_training_run(
    database: Database,
    inputs: TrainingInputs,
    *,
    stale_run_hours: float,
    force: bool,
    flow_run_id: str | None,
) -> Claim:
    """Open (and commit) a training run, unless one is running or nothing changed since the last success.

    Both refusals are recorded as skipped runs with their reason, so the history shows every night. Two flows
    starting at the same moment both commit their run, then look again: the later one (higher id) steps back.
    """
    stage = ModelStage(inputs.stage)
    fps = {"dataset_fingerprint": inputs.combined_fingerprint, "code_fingerprint": inputs.code_fingerprint}
    parameters = inputs.parameters() | {"force": force}
    newer_than = utcnow() - timedelta(hours=stale_run_hours)
    with database.session() as session:
        running = running_training_run(session, stage, newer_than=newer_than)
        if running is not None:
            reason = f"retraining already running (run {running.id}, started {running.started_at:%Y-%m-%d %H:%M} UTC)"
            running_id = None
        else:
            running_id = -1
            last = queries.last_training_run(session, stage, statuses=[TrainingStatus.SUCCEEDED])
            unchanged = (
                last is not None
                and last.dataset_fingerprint == inputs.combined_fingerprint
                and last.code_fingerprint == inputs.code_fingerprint
            )
            if unchanged and not force:
                reason = f"{inputs.describe()} unchanged since run {last.id}"  # type: ignore[union-attr]
                running_id = None
    if running_id is None:
        return _skipped(database, stage, parameters, reason, **fps)
    with database.session() as session:
        run = queries.start_training_run(session, stage=stage, parameters=parameters, flow_run_id=flow_run_id, **fps)
        run_id = run.id
    with database.session() as session:
        earlier = running_training_run(session, stage, newer_than=newer_than)
        if earlier is not None and earlier.id < run_id:
            reason = f"retraining already running (run {earlier.id}, started {earlier.started_at:%Y-%m-%d %H:%M} UTC)"
            queries.finish_training_run(
                session, run_id, status=TrainingStatus.SKIPPED, decision=Decision.SKIPPED, reason=reason
            )
            return Claim(run_id, True, reason)
    return Claim(run_id, False)


@task(name="train stage 1", cache_policy=NO_CACHE)
def train_stage1_model(settings: Settings, inputs: TrainingInputs) -> TrainedModel:
    """Train the stage-1 detector on DB_3 with the retrain recipe and save it with its card and evidence."""
    logger = get_run_logger()
    recipe = inputs.recipe
    index = read_dataset(inputs.dataset_root)
    device = resolve_device(settings.device)
    logger.info("training stage 1 (%s, %s epochs at most) on %s", recipe["architecture"], recipe["epochs"], index.root)
    result = train_stage1(
        index, architecture=recipe["architecture"], epochs=recipe["epochs"], seed=recipe["seed"], device=device
    )
    evaluation = evaluate_stage1(result.detector, index)
    metrics = evaluation.metrics.to_dict() | {"f1": result.metrics["f1"]}
    folder = settings.models_dir / model_folder_name("stage1", recipe["architecture"])  # type: ignore[operator]
    result.detector.to_checkpoint(folder, metrics, result.dataset_fingerprint, result.training)
    write_evaluation(folder, evaluation, history=result.history)
    return TrainedModel(folder, result.history, result.training, result.dataset_fingerprint)


def _crop_size(index: DatasetIndex) -> int:
    first = index.splits["train"][0].path if index.splits.get("train") else None
    if first is None:
        raise DatasetError(index.root, "the dataset has no training crops")
    return min(image_size(first))


@task(name="train stage 2", cache_policy=NO_CACHE)
def train_stage2_model(settings: Settings, inputs: TrainingInputs) -> TrainedModel:
    """Train the stage-2 classifier on DB_4 plus the reviewed cells, and save it with its card and evidence.

    The reviewed cells are cut from their scans into a working folder beside DB_4 (so the combined dataset can
    be hard links), which is removed afterwards.
    """
    logger = get_run_logger()
    recipe = inputs.recipe
    db4 = read_dataset(inputs.dataset_root, extra_label_map=settings.labels.extra_label_map)
    dataset_crop = _crop_size(db4)
    work = inputs.dataset_root.parent / f".retrain-{utcnow():%Y%m%dT%H%M%S%f}"
    try:
        reviewed = write_reviewed_crops(
            inputs.reviewed,
            work / "reviewed",
            crop_size=dataset_crop,
            max_file_bytes=settings.limits.max_file_bytes,
            max_image_pixels=settings.limits.max_image_pixels,
        )
        for line in reviewed.skipped:
            logger.warning("reviewed %s", line)
        index = read_dataset(
            combined_db4(inputs.dataset_root, work / "reviewed", work / "DB_4"),
            extra_label_map=settings.labels.extra_label_map,
        )
        logger.info(
            "training stage 2 (%s, %s) on %s train crops (%s reviewed), validating on %s",
            recipe["architecture"],
            recipe["mode"],
            len(index.splits["train"]),
            reviewed.written,
            len(index.splits["validation"]),
        )
        pretrained = recipe["pretrained"]
        result = train_stage2(
            index,
            architecture=recipe["architecture"],
            mode=recipe["mode"],
            epochs=recipe["epochs"],
            batch_size=recipe["batch_size"],
            seed=recipe["seed"],
            device=resolve_device(settings.device),
            input_size=recipe["input_size"],
            crop_size=recipe["crop_size"] or dataset_crop,
            pretrained=None if pretrained is None else ("auto" if pretrained == "auto" else Path(pretrained)),
        )
        folder = settings.models_dir / model_folder_name("stage2", recipe["architecture"])  # type: ignore[operator]
        result.save(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    training = result.training | {"reviewed_crops": reviewed.counts}
    return TrainedModel(folder, result.history, training, result.dataset_fingerprint, reviewed.counts, reviewed.skipped)


@task(name="evaluate model on validation", cache_policy=NO_CACHE)
def evaluate_model_folder(settings: Settings, stage: str, folder: Path, dataset_root: Path) -> Evaluation:
    """Score a saved model on a dataset's validation split, loaded from its folder as analyses load it."""
    index = read_dataset(dataset_root, extra_label_map=settings.labels.extra_label_map)
    if stage == "stage1":
        return evaluate_stage1(Stage1Detector.from_checkpoint(folder), index)
    classifier = Stage2Classifier.from_checkpoint(folder)
    return evaluate_stage2(classifier, index, batch_size=settings.batch.stage2_inference)


@task(name="champion model", cache_policy=NO_CACHE)
def champion_folder(database: Database, stage: str) -> tuple[int, Path] | None:
    """The stage's champion (id and folder), or ``None`` before the stage has one."""
    with database.session() as session:
        champion = queries.get_champion(session, ModelStage(stage))
        return None if champion is None else (champion.id, Path(champion.file_path))


def card_data_provenance(folder: Path) -> str | None:
    """What a saved model was trained and validated on (``real``/``synthetic``), from its card; ``None``: unknown."""
    value = read_card(resolve_card_path(folder)).training.get("data_provenance")
    return value if value in ("real", "synthetic") else None


@task(name="register and judge challenger", cache_policy=NO_CACHE)
def decide_and_record(
    settings: Settings,
    database: Database,
    stage: str,
    run_id: int,
    trained: TrainedModel,
    challenger: dict[str, Any],
    champion: tuple[int, dict[str, Any]] | None,
    *,
    challenger_data: str | None = None,
    champion_data: str | None = None,
) -> Outcome:
    """Register the challenger (never champion by itself), let the gate decide, and close the training run.

    The run keeps both models' validation metrics, the comparison, the decision and its reason.
    ``challenger_data`` and ``champion_data`` (``real``/``synthetic``) let the gate keep a real champion from a
    challenger validated on synthetic data only.
    """
    _, card = load_weights(trained.folder)
    version = register_saved_model(database, trained.folder, card, actor=ACTOR, auto_champion=False)
    baseline_id = champion[0] if champion else None
    gate = decide_promotion(
        stage,
        challenger,
        champion[1] if champion else None,
        max_sensitivity_drop=settings.retrain.max_sensitivity_drop,
        challenger_data=challenger_data,
        champion_data=champion_data,
    )
    decision, reason = governed_decision(settings, gate.promote, gate.reason, challenger, has_champion=bool(champion))
    with database.session() as session:
        if challenger_data:
            queries.record_data_provenance(session, version.id, challenger_data)
        if baseline_id == version.id:
            decision, reason = Decision.SKIPPED, f"the challenger has the champion's weights (model {version.id})"
        elif decision == Decision.PROMOTED:
            queries.promote(session, version.id, actor=ACTOR, reason=reason)
        elif decision == Decision.REJECTED:
            queries.reject(session, version.id, actor=ACTOR, reason=reason)
        # PENDING_APPROVAL: the candidate stays a candidate until an admin approves or declines it
        queries.finish_training_run(
            session,
            run_id,
            status=TrainingStatus.SUCCEEDED,
            history=trained.history,
            metrics={
                "challenger": challenger,
                "champion": champion[1] if champion else None,
                "comparison": gate.comparison,
                "training": trained.training,
                "reviewed_skipped": list(trained.reviewed_skipped),
            },
            model_version_id=version.id,
            baseline_model_version_id=baseline_id,
            decision=decision,
            reason=reason,
        )
    return Outcome(run_id, version.id, baseline_id, decision, reason)


def governed_decision(
    settings: Settings, passed: bool, reason: str, challenger: dict[str, Any], *, has_champion: bool
) -> tuple[Decision, str]:
    """The gate's verdict under the lab's governance: the validation set's size, then the promotion policy.

    Examples:
        >>> s = Settings(home="/tmp/x")
        >>> governed_decision(s, True, "better", {"n_samples": 80}, has_champion=True)[1][:61]
        'validation set of 80 samples, fewer than the 200 a decision n'
        >>> governed_decision(s, True, "better", {"n_samples": 800}, has_champion=True)[0]
        <Decision.PENDING_APPROVAL: 'pending approval'>
        >>> governed_decision(s, True, "first model of its stage", {"n_samples": 8}, has_champion=False)[0]
        <Decision.PROMOTED: 'promoted'>
    """
    if not has_champion:  # nothing to protect: the lab needs a model to work at all
        return (Decision.PROMOTED if passed else Decision.REJECTED), reason
    minimum = settings.retrain.min_validation_samples
    samples = int(challenger.get("n_samples") or 0)
    if samples < minimum:
        return Decision.REJECTED, (
            f"validation set of {samples} samples, fewer than the {minimum} a decision needs "
            "(retrain.min_validation_samples): not promoted"
        )
    if not passed:
        return Decision.REJECTED, reason
    if settings.retrain.promotion_policy == "approve":
        return Decision.PENDING_APPROVAL, f"{reason}; waits for an admin to approve it on the Models page"
    return Decision.PROMOTED, reason


@task(name="record failed training run", cache_policy=NO_CACHE)
def fail_training_run(database: Database, stage: str, run_id: int | None, error: str, parameters: dict) -> int:
    """Close a run as failed with its error (opening one first when the failure came before it existed)."""
    with database.session() as session:
        if run_id is None:
            run_id = queries.start_training_run(session, stage=ModelStage(stage), parameters=parameters).id
        queries.finish_training_run(session, run_id, status=TrainingStatus.FAILED, error=error)
    return run_id


def predicted_distribution(evaluation: Evaluation, classes: Sequence[str]) -> tuple[dict[str, int], np.ndarray]:
    """A stage-2 evaluation's predicted-class counts and abnormal scores (1 - P(NILM)), for the drift check.

    Examples:
        >>> from papscreen.models.metrics import classification_report
        >>> probs = np.array([[0.9, 0.1], [0.2, 0.8]])
        >>> e = Evaluation(classification_report(np.array([0, 1]), probs, ["NILM", "HSIL"]), np.array([0, 1]), probs)
        >>> counts, suspicion = predicted_distribution(e, ["NILM", "HSIL"])
        >>> counts, suspicion.round(2).tolist()
        ({'HSIL': 1, 'NILM': 1}, [0.1, 0.8])
    """
    probs = np.asarray(evaluation.probs, np.float64)
    counts = Counter(classes[i] for i in probs.argmax(axis=1))
    suspicion = 1.0 - probs[:, list(classes).index("NILM")]
    return dict(sorted(counts.items())), suspicion
