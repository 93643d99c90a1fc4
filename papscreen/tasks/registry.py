"""Registering a saved model folder in the registry: shared by ``papscreen train`` and nightly retraining."""

from __future__ import annotations

from pathlib import Path

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage, ModelVersion
from papscreen.models.card import ModelCard
from papscreen.models.checkpoints import resolve_card_path

__all__ = ["register_saved_model"]


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
