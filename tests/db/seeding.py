"""What the database tests' seeds share: a model version registered in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from papscreen.db import queries
from papscreen.db.schema import ModelStage, ModelVersion


def add_model(
    session: Session,
    stage: ModelStage,
    name: str,
    architecture: str,
    file_path: str | Path,
    digest_char: str,
    metrics: dict[str, Any] | None = None,
    *,
    auto_champion: bool = True,
) -> ModelVersion:
    """Register a model version whose sha256 is ``digest_char`` 64 times (the first of a stage becomes champion)."""
    return queries.register_model_version(
        session,
        stage=stage,
        name=name,
        architecture=architecture,
        file_path=str(file_path),
        sha256=digest_char * 64,
        metrics=metrics,
        auto_champion=auto_champion,
    )
