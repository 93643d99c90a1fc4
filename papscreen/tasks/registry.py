"""Registering a saved model folder in the registry.

Shared by ``papscreen train``, nightly retraining, and the shipped models that ``papscreen up`` and
``papscreen demo`` install where a stage has no champion.
"""

from __future__ import annotations

from pathlib import Path

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage, ModelVersion
from papscreen.models.card import ModelCard
from papscreen.models.checkpoints import resolve_card_path
from papscreen.models.shipped import copy_shipped_model, shipped_card

__all__ = ["SHIPPED_ACTOR", "register_saved_model", "register_shipped_models"]

SHIPPED_ACTOR = "papscreen (shipped model)"


def register_saved_model(
    database: Database, folder: Path, card: ModelCard, *, actor: str, auto_champion: bool = True
) -> ModelVersion:
    """Register a saved model folder as a candidate, in its own transaction.

    Args:
        database: where the registry is.
        folder: the saved model (weights and card).
        card: its card, as saved.
        actor: who registers (the audit log says so).
        auto_champion: the first model of a stage becomes champion (``papscreen train``); retraining passes
            ``False`` because its validation gate decides.
    """
    with database.session() as session:
        return queries.register_model_version(
            session,
            stage=ModelStage(card.stage),
            name=card.name or folder.name,
            architecture=card.architecture,
            file_path=str(resolve_card_path(folder).parent.resolve()),
            sha256=card.weights_sha256,
            dataset_fingerprint=card.dataset_fingerprint,
            metrics=card.metrics,
            card=card.model_dump(mode="json"),
            actor=actor,
            auto_champion=auto_champion,
        )


def register_shipped_models(database: Database, models_dir: Path) -> dict[ModelStage, str]:
    """Make papscreen's shipped model the champion of each stage that has none; say what happened per stage.

    The shipped folder is copied into ``models_dir`` first (the registry keeps a folder path). A stage that has a
    champion keeps it: a lab's own or earlier model is never replaced here.
    """
    outcome: dict[ModelStage, str] = {}
    for stage in ModelStage:
        with database.session() as session:
            champion = queries.get_champion(session, stage)
            if champion is not None:
                outcome[stage] = f"champion {champion.name} kept"
                continue
        folder = copy_shipped_model(stage.value, models_dir)  # type: ignore[arg-type]
        card = shipped_card(stage.value)  # type: ignore[arg-type]  # the copy was checked against it
        version = register_saved_model(database, folder, card, actor=SHIPPED_ACTOR)
        outcome[stage] = f"shipped {card.name} is champion (model {version.id})"
    return outcome
