"""The model registry keeps one champion per stage, enforced by the database itself."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Decision, ModelStage, ModelStatus, ModelVersion, TrainingStatus


def _register(session: Session, n: int, stage: ModelStage = ModelStage.STAGE2) -> ModelVersion:
    return queries.register_model_version(
        session,
        stage=stage,
        name=f"m{n}",
        architecture="resnet50",
        file_path=f"/models/m{n}.safetensors",
        sha256=f"{n:064d}",
        dataset_fingerprint="f" * 16,
        metrics={"macro_f1": 0.5 + n / 100},
    )


def test_first_model_of_a_stage_becomes_champion_then_candidates(database: Database) -> None:
    with database.session() as s:
        first = _register(s, 1)
        second = _register(s, 2)
        other_stage = _register(s, 3, ModelStage.STAGE1)
    assert first.status == ModelStatus.CHAMPION
    assert second.status == ModelStatus.CANDIDATE
    assert other_stage.status == ModelStatus.CHAMPION


def test_promote_retires_previous_champion_and_is_audited(database: Database) -> None:
    with database.session() as s:
        first, second = _register(s, 1), _register(s, 2)
        queries.promote(s, second.id, actor="alice", reason="better macro-F1")
    with database.session() as s:
        champion = queries.get_champion(s, ModelStage.STAGE2)
        assert champion is not None
        assert champion.id == second.id
        assert champion.promoted_at is not None
        assert queries.get_model_version(s, first.id).status == ModelStatus.RETIRED
        events = queries.list_events(s, entity_type="model_version", entity_id=second.id)
        promoted = [e for e in events if e.action == "model.promoted"]
        assert promoted[0].actor == "alice"
        assert promoted[0].details["previous"] == first.id


def test_database_refuses_two_champions(database: Database) -> None:
    with database.session() as s:
        _register(s, 1)
        rogue_id = _register(s, 2).id
    promote_behind_the_registry = (
        update(ModelVersion).where(ModelVersion.id == rogue_id).values(status=ModelStatus.CHAMPION)
    )
    with pytest.raises(IntegrityError), database.session() as s:
        s.execute(promote_behind_the_registry)


def test_same_weights_register_once(database: Database) -> None:
    with database.session() as s:
        a = _register(s, 1)
        b = _register(s, 1)
        assert a.id == b.id
        assert len(queries.list_model_versions(s)) == 1


def test_reject_refuses_the_champion(database: Database) -> None:
    with database.session() as s:
        champion, candidate = _register(s, 1), _register(s, 2)
        queries.reject(s, candidate.id, reason="HSIL sensitivity dropped")
        assert candidate.status == ModelStatus.REJECTED
        with pytest.raises(ValueError, match="is the champion"):
            queries.reject(s, champion.id, reason="no")


def test_training_runs_record_decision_and_duration(database: Database) -> None:
    with database.session() as s:
        model = _register(s, 1)
        run = queries.start_training_run(
            s, stage=ModelStage.STAGE2, parameters={"epochs": 3}, dataset_fingerprint="abc", code_fingerprint="def"
        )
        run_id = run.id
    with database.session() as s:
        queries.finish_training_run(
            s,
            run_id,
            status=TrainingStatus.SUCCEEDED,
            history=[{"epoch": 1, "loss": 1.0}],
            metrics={"macro_f1": 0.9},
            model_version_id=model.id,
            decision=Decision.PROMOTED,
            reason="first model",
        )
    with database.session() as s:
        last = queries.last_training_run(s, ModelStage.STAGE2)
        assert last is not None
        assert last.decision.value == "promoted"
        assert last.duration_s is not None
        assert last.duration_s >= 0
        assert last.history == [{"epoch": 1, "loss": 1.0}]
