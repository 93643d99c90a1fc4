"""What the dashboard's models page reads: each stage's model history, training runs and validation runs.

Plain frozen dataclasses (never ORM objects) so the dashboard can cache them with ``st.cache_data``. Metrics,
cards and histories are copied out of the JSON columns as they were saved; the page decides what to show.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from papscreen.db.schema import ModelStage, ModelStatus, ModelVersion, TrainingRun, ValidationRun

__all__ = [
    "ModelVersionView",
    "RegistryView",
    "TrainingRunView",
    "ValidationRunView",
    "model_history",
    "registry_view",
    "training_history",
    "validation_history",
]


@dataclass(frozen=True)
class ModelVersionView:
    """One registered model version as the models page shows it.

    Attributes:
        id: registry id.
        stage: ``stage1`` or ``stage2``.
        name: the model's name.
        architecture: network architecture.
        status: ``candidate``, ``champion``, ``retired`` or ``rejected``.
        created_at: when it was registered.
        promoted_at: when it became champion (``None`` if never).
        retired_at: when a newer champion replaced it.
        file_path: the model's folder (weights, card, ``metrics.json`` and the PNG plots).
        dataset_fingerprint: the training data's fingerprint.
        metrics: validation metrics saved with it (``ClassificationMetrics.to_dict()`` for stage 2).
        card: the model card as saved.
        notes: free text.
    """

    id: int
    stage: str
    name: str
    architecture: str
    status: str
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None
    file_path: str
    dataset_fingerprint: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    notes: str | None = None

    @property
    def label(self) -> str:
        """A one-line name for pickers: ``#3 s2-night-7 (resnet18, champion)``."""
        return f"#{self.id} {self.name} ({self.architecture}, {self.status})"


@dataclass(frozen=True)
class TrainingRunView:
    """One training run: what the validation gate decided, why, and against which baseline.

    Attributes:
        id: run id.
        stage: ``stage1`` or ``stage2``.
        status: ``running``, ``succeeded``, ``failed`` or ``skipped``.
        started_at: start time.
        finished_at: end time, ``None`` while running.
        duration_s: how long it took.
        model_version_id: the challenger it produced.
        model_name: the challenger's name.
        baseline_model_version_id: the champion it was compared with.
        baseline_name: that champion's name.
        decision: ``promoted``, ``rejected`` or ``skipped`` (``None`` for a failed or running run).
        reason: the gate's sentence, with the numbers.
        error: why a failed run failed.
        history: per-epoch rows (``train_loss``, ``val_loss``, ``val_f1``, ...).
        metrics: challenger and champion metrics and their comparison.
        flow_run_id: the retraining flow run.
    """

    id: int
    stage: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    model_version_id: int | None
    model_name: str | None
    baseline_model_version_id: int | None
    baseline_name: str | None
    decision: str | None
    reason: str | None
    error: str | None
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    flow_run_id: str | None = None


@dataclass(frozen=True)
class ValidationRunView:
    """One nightly re-evaluation of the champions.

    Attributes:
        id: run id.
        at: when it ran.
        stage1_model_id: the stage-1 champion scored.
        stage2_model_id: the stage-2 champion scored.
        macro_f1: macro-F1 per dataset (``DB_3``, ``DB_4``, ``reference``, ...), where recorded.
        drift_flagged: whether the recent slides drifted from validation.
        drift_reason: the drift check's sentence.
        notes: what was not scored and why.
        flow_run_id: the validation flow run.
    """

    id: int
    at: datetime
    stage1_model_id: int | None
    stage2_model_id: int | None
    macro_f1: dict[str, float]
    drift_flagged: bool
    drift_reason: str | None
    notes: str | None
    flow_run_id: str | None


@dataclass(frozen=True)
class RegistryView:
    """Everything the models page shows, read in one transaction."""

    versions: tuple[ModelVersionView, ...]
    training_runs: tuple[TrainingRunView, ...]
    validation_runs: tuple[ValidationRunView, ...]

    def champion(self, stage: str) -> ModelVersionView | None:
        """The stage's champion, or ``None`` before it has one."""
        return next((v for v in self.versions if v.stage == stage and v.status == ModelStatus.CHAMPION.value), None)

    def of_stage(self, stage: str) -> list[ModelVersionView]:
        """The stage's versions, newest first."""
        return [v for v in self.versions if v.stage == stage]


def _version(model: ModelVersion) -> ModelVersionView:
    return ModelVersionView(
        id=model.id,
        stage=model.stage.value,
        name=model.name,
        architecture=model.architecture,
        status=model.status.value,
        created_at=model.created_at,
        promoted_at=model.promoted_at,
        retired_at=model.retired_at,
        file_path=model.file_path,
        dataset_fingerprint=model.dataset_fingerprint,
        metrics=copy.deepcopy(model.metrics or {}),
        card=copy.deepcopy(model.card or {}),
        notes=model.notes,
    )


def model_history(session: Session, stage: ModelStage | None = None) -> list[ModelVersionView]:
    """Model versions (of one stage, or all), newest first.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> from papscreen.db.queries import register_model_version
        >>> with memory_database().session() as s:
        ...     _ = register_model_version(s, stage=ModelStage.STAGE1, name="s1", architecture="cnn20",
        ...                                file_path="/m/s1", sha256="0" * 64)
        ...     [(v.name, v.status) for v in model_history(s)]
        [('s1', 'champion')]
    """
    query = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    if stage is not None:
        query = query.where(ModelVersion.stage == stage)
    return [_version(m) for m in session.scalars(query).all()]


def training_history(session: Session, stage: ModelStage | None = None, *, limit: int = 100) -> list[TrainingRunView]:
    """Training runs (of one stage, or all), newest first, with the challenger's and baseline's names.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     training_history(s)
        []
    """
    query = select(TrainingRun).order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc()).limit(limit)
    if stage is not None:
        query = query.where(TrainingRun.stage == stage)
    runs = session.scalars(query).all()
    ids = {i for run in runs for i in (run.model_version_id, run.baseline_model_version_id) if i is not None}
    names = dict(session.execute(select(ModelVersion.id, ModelVersion.name).where(ModelVersion.id.in_(ids))).all())
    return [
        TrainingRunView(
            id=run.id,
            stage=run.stage.value,
            status=run.status.value,
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration_s=run.duration_s,
            model_version_id=run.model_version_id,
            model_name=names.get(run.model_version_id),
            baseline_model_version_id=run.baseline_model_version_id,
            baseline_name=names.get(run.baseline_model_version_id),
            decision=run.decision.value if run.decision is not None else None,
            reason=run.reason,
            error=run.error,
            history=[dict(row) for row in (run.history or []) if isinstance(row, dict)],
            metrics=copy.deepcopy(run.metrics or {}),
            flow_run_id=run.flow_run_id,
        )
        for run in runs
    ]


def _macro_f1(metrics: dict[str, Any]) -> dict[str, float]:
    found = {}
    for dataset, values in (metrics or {}).items():
        value = values.get("macro_f1") if isinstance(values, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[str(dataset)] = float(value)
    return found


def validation_history(session: Session, *, limit: int = 365) -> list[ValidationRunView]:
    """Validation runs, oldest first (the order a chart over time wants), the newest ``limit`` of them.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> from papscreen.db.queries.validation import record_validation_run
        >>> with memory_database().session() as s:
        ...     _ = record_validation_run(s, stage1_model_id=None, stage2_model_id=None,
        ...                               metrics={"DB_4": {"macro_f1": 0.9}}, drift={}, drift_flagged=False)
        ...     [run.macro_f1 for run in validation_history(s)]
        [{'DB_4': 0.9}]
    """
    runs = session.scalars(
        select(ValidationRun).order_by(ValidationRun.at.desc(), ValidationRun.id.desc()).limit(limit)
    ).all()
    return [
        ValidationRunView(
            id=run.id,
            at=run.at,
            stage1_model_id=run.stage1_model_id,
            stage2_model_id=run.stage2_model_id,
            macro_f1=_macro_f1(run.metrics),
            drift_flagged=bool(run.drift_flagged),
            drift_reason=(run.drift or {}).get("reason"),
            notes=run.notes,
            flow_run_id=run.flow_run_id,
        )
        for run in reversed(runs)
    ]


def registry_view(session: Session, *, training_limit: int = 100, validation_limit: int = 365) -> RegistryView:
    """Model versions, training runs and validation runs, all in the caller's one transaction.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     view = registry_view(s)
        >>> view.champion("stage1") is None, view.training_runs, view.validation_runs
        (True, (), ())
    """
    return RegistryView(
        versions=tuple(model_history(session)),
        training_runs=tuple(training_history(session, limit=training_limit)),
        validation_runs=tuple(validation_history(session, limit=validation_limit)),
    )
