"""The model registry: candidates, one champion per stage, promotion with an audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from papscreen.db.queries.audit import SYSTEM_ACTOR, record_event
from papscreen.db.schema import Decision, ModelStage, ModelStatus, ModelVersion, TrainingRun, utcnow

__all__ = [
    "approve_candidate",
    "decline_candidate",
    "get_champion",
    "get_model_version",
    "list_model_versions",
    "pending_approvals",
    "promote",
    "record_data_provenance",
    "register_model_version",
    "reject",
]


def get_model_version(session: Session, model_id: int) -> ModelVersion | None:
    """One model version by id."""
    return session.get(ModelVersion, model_id)


def get_champion(session: Session, stage: ModelStage) -> ModelVersion | None:
    """The stage's current champion, or ``None`` before any model was trained or imported."""
    return session.scalars(
        select(ModelVersion).where(ModelVersion.stage == stage, ModelVersion.status == ModelStatus.CHAMPION)
    ).first()


def list_model_versions(session: Session, stage: ModelStage | None = None) -> Sequence[ModelVersion]:
    """Model versions, newest first."""
    query = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    if stage is not None:
        query = query.where(ModelVersion.stage == stage)
    return session.scalars(query).all()


def register_model_version(
    session: Session,
    *,
    stage: ModelStage,
    name: str,
    architecture: str,
    file_path: str,
    sha256: str,
    dataset_fingerprint: str | None = None,
    metrics: dict[str, Any] | None = None,
    card: dict[str, Any] | None = None,
    actor: str = SYSTEM_ACTOR,
    auto_champion: bool = True,
) -> ModelVersion:
    """Register a model file as a candidate; the first model of a stage becomes its champion.

    Registering the same weights again (same sha256) returns the existing version unchanged.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     m = register_model_version(s, stage=ModelStage.STAGE1, name="s1", architecture="cnn20",
        ...                                file_path="/m/s1.safetensors", sha256="0" * 64)
        ...     m.status.value
        'champion'
    """
    existing = session.scalars(select(ModelVersion).where(ModelVersion.sha256 == sha256)).first()
    if existing is not None:
        return existing
    version = ModelVersion(
        stage=stage,
        name=name,
        architecture=architecture,
        file_path=file_path,
        sha256=sha256,
        dataset_fingerprint=dataset_fingerprint,
        metrics=metrics or {},
        card=card or {},
        status=ModelStatus.CANDIDATE,
    )
    session.add(version)
    session.flush()
    record_event(session, "model.registered", "model_version", version.id, actor=actor, details={"name": name})
    if auto_champion and get_champion(session, stage) is None:
        promote(session, version.id, actor=actor, reason="first model of its stage")
    return version


def promote(session: Session, model_id: int, *, actor: str = SYSTEM_ACTOR, reason: str = "") -> ModelVersion:
    """Make a version its stage's champion; the previous champion is retired. Audited."""
    version = session.get(ModelVersion, model_id)
    if version is None:
        raise LookupError(f"no model version with id {model_id}")
    if version.status == ModelStatus.CHAMPION:
        return version
    previous = get_champion(session, version.stage)
    now = utcnow()
    if previous is not None:
        previous.status = ModelStatus.RETIRED
        previous.retired_at = now
        session.flush()  # the one-champion index must see the old champion gone first
    version.status = ModelStatus.CHAMPION
    version.promoted_at = now
    session.flush()
    record_event(
        session,
        "model.promoted",
        "model_version",
        version.id,
        actor=actor,
        details={"stage": version.stage.value, "previous": previous.id if previous else None, "reason": reason},
    )
    return version


def reject(session: Session, model_id: int, *, actor: str = SYSTEM_ACTOR, reason: str) -> ModelVersion:
    """Mark a candidate rejected by the validation gate (or by a person). Audited."""
    version = session.get(ModelVersion, model_id)
    if version is None:
        raise LookupError(f"no model version with id {model_id}")
    if version.status == ModelStatus.CHAMPION:
        raise ValueError(f"model version {model_id} is the champion; promote another one first")
    version.status = ModelStatus.REJECTED
    record_event(session, "model.rejected", "model_version", version.id, actor=actor, details={"reason": reason})
    return version


def approve_candidate(session: Session, model_id: int, *, actor: str) -> ModelVersion:
    """A person approves a candidate that passed the gate: it becomes the champion; its training run says so.

    Raises:
        LookupError: no such model version.
        ValueError: it is not waiting for approval (no training run of it is ``pending approval``).
    """
    run = _pending_run(session, model_id)
    version = promote(session, model_id, actor=actor, reason=f"approved by {actor}")
    run.decision = Decision.PROMOTED
    run.reason = f"{run.reason}; approved by {actor}"
    record_event(session, "model.approved", "model_version", model_id, actor=actor, details={"run_id": run.id})
    return version


def decline_candidate(session: Session, model_id: int, *, actor: str, reason: str = "") -> ModelVersion:
    """A person declines a candidate that passed the gate: it is rejected, the champion stays."""
    run = _pending_run(session, model_id)
    why = f"declined by {actor}" + (f": {reason}" if reason else "")
    version = reject(session, model_id, actor=actor, reason=why)
    run.decision = Decision.REJECTED
    run.reason = f"{run.reason}; {why}"
    return version


def pending_approvals(session: Session) -> Sequence[TrainingRun]:
    """Training runs whose challenger passed the gate and waits for a person, newest first."""
    return session.scalars(
        select(TrainingRun).where(TrainingRun.decision == Decision.PENDING_APPROVAL).order_by(TrainingRun.id.desc())
    ).all()


def _pending_run(session: Session, model_id: int) -> TrainingRun:
    if session.get(ModelVersion, model_id) is None:
        raise LookupError(f"no model version with id {model_id}")
    run = session.scalars(
        select(TrainingRun).where(
            TrainingRun.model_version_id == model_id, TrainingRun.decision == Decision.PENDING_APPROVAL
        )
    ).first()
    if run is None:
        raise ValueError(f"model version {model_id} is not waiting for approval")
    return run


def record_data_provenance(session: Session, model_id: int, provenance: str) -> None:
    """Note on a registered model's card what it was trained on (``real``/``synthetic``), unless it says already."""
    version = session.get(ModelVersion, model_id)
    if version is None:
        raise LookupError(f"no model version with id {model_id}")
    card = dict(version.card or {})
    training = dict(card.get("training") or {})
    if training.get("data_provenance"):
        return
    card["training"] = training | {"data_provenance": provenance}
    version.card = card
