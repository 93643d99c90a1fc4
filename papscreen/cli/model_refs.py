"""How commands name a model: a folder on disk, a registered id, or a stage's current champion.

``papscreen evaluate 3 DATASET``, ``papscreen evaluate stage2 DATASET`` (the champion) and
``papscreen evaluate models/stage2-resnet50-... DATASET`` all work; only the last needs no database. A stage
without a champion (or a database not set up yet) falls back to papscreen's shipped model of that stage
(:mod:`papscreen.models.shipped`), and says so.
"""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from papscreen.cli.common import database_from, err_console, open_database, settings_from
from papscreen.db import migrate, queries
from papscreen.db.schema import ModelStage
from papscreen.errors import CheckpointError
from papscreen.models.shipped import shipped_card, shipped_model_folder

__all__ = ["MODEL_REF_HELP", "resolve_model_ref"]

MODEL_REF_HELP = (
    "A model folder, a registered model id, or stage1/stage2 for that stage's champion "
    "(papscreen's shipped model while the stage has none)."
)


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
    if reference in stages:
        return _champion_or_shipped(ctx, stages[reference])
    with open_database(ctx) as database, database.session() as session:
        version = queries.get_model_version(session, int(reference))
        if version is None:
            raise CheckpointError(path, f"no model with id {reference} is registered (see `papscreen models list`)")
        return Path(version.file_path)


def _champion_or_shipped(ctx: typer.Context, stage: ModelStage) -> Path:
    """The stage's champion; the shipped model when there is none, or no database set up to hold one."""
    url = make_url(settings_from(ctx).database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).expanduser().exists():
        return _shipped(stage, f"there is no database yet ({url.database})")  # not created just to look
    database = database_from(ctx)
    why = f"no {stage.value} champion is registered"
    try:
        if migrate.current_revision(database) == migrate.head_revision(database):
            with database.session() as session:
                champion = queries.get_champion(session, stage)
                if champion is not None:
                    return Path(champion.file_path)
        else:
            why = f"the database {database!r} is not set up (`papscreen db upgrade`)"
    except OperationalError as e:
        why = f"the database cannot be reached ({e.orig})"
    finally:
        database.dispose()
    return _shipped(stage, why)


def _shipped(stage: ModelStage, why: str) -> Path:
    folder = shipped_model_folder(stage.value)  # type: ignore[arg-type]
    err_console.print(f"{why}: using papscreen's shipped {stage.value} model {shipped_card(stage.value).name}")  # type: ignore[arg-type]
    return folder
