"""How commands name a model: a folder on disk, a registered id, or a stage's current champion.

``papscreen evaluate 3 DATASET``, ``papscreen evaluate stage2 DATASET`` (the champion) and
``papscreen evaluate models/stage2-resnet50-... DATASET`` all work; only the last needs no database.
"""

from __future__ import annotations

from pathlib import Path

import typer

from papscreen.cli.common import open_database
from papscreen.db import queries
from papscreen.db.schema import ModelStage
from papscreen.errors import CheckpointError

__all__ = ["MODEL_REF_HELP", "resolve_model_ref"]

MODEL_REF_HELP = "A model folder, a registered model id, or stage1/stage2 for that stage's champion."


def resolve_model_ref(ctx: typer.Context, reference: str) -> Path:
    """The model folder a reference names.

    Raises:
        CheckpointError: no such folder, id or champion (the message says which and what to do).
    """
    path = Path(reference).expanduser()
    if path.exists():
        return path
    stages = {stage.value: stage for stage in ModelStage}
    if not reference.isdigit() and reference not in stages:
        raise CheckpointError(path, "no such model folder (nor a model id, nor stage1/stage2)")
    with open_database(ctx) as database, database.session() as session:
        if reference.isdigit():
            version = queries.get_model_version(session, int(reference))
            if version is None:
                raise CheckpointError(path, f"no model with id {reference} is registered (see `papscreen models list`)")
        else:
            version = queries.get_champion(session, stages[reference])
            if version is None:
                raise CheckpointError(
                    path, f"no {reference} champion yet: train one (`papscreen train {reference} ...`)"
                )
        return Path(version.file_path)
