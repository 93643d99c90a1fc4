"""Registering papscreen's shipped models: champions where a stage has none, never over a lab's own champion."""

from __future__ import annotations

from pathlib import Path

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage
from papscreen.models.shipped import shipped_card
from papscreen.tasks.registry import SHIPPED_ACTOR, register_shipped_models


def test_shipped_models_become_champions_once_and_a_labs_champion_is_kept(database: Database, tmp_path: Path) -> None:
    with database.session() as session:  # the lab already has its own stage-1 champion
        own = queries.register_model_version(
            session, stage=ModelStage.STAGE1, name="lab-stage1", architecture="cnn20", file_path="/m", sha256="1" * 64
        )
    outcome = register_shipped_models(database, tmp_path / "models")
    assert outcome[ModelStage.STAGE1] == "champion lab-stage1 kept"
    assert outcome[ModelStage.STAGE2].startswith(f"shipped {shipped_card('stage2').name} is champion")
    with database.session() as session:
        assert queries.get_champion(session, ModelStage.STAGE1).id == own.id  # type: ignore[union-attr]
        champion = queries.get_champion(session, ModelStage.STAGE2)
        assert champion is not None
        assert champion.sha256 == shipped_card("stage2").weights_sha256
        assert Path(champion.file_path).parent == (tmp_path / "models").resolve()  # a copy beside the lab's models
        assert champion.card["training"]["data_provenance"] == "real"
        events = queries.list_events(session, entity_type="model_version", entity_id=champion.id)
        assert {e.actor for e in events} == {SHIPPED_ACTOR}

    again = register_shipped_models(database, tmp_path / "models")
    assert again[ModelStage.STAGE2] == f"champion {shipped_card('stage2').name} kept"
