"""``papscreen import-legacy MODEL``: bring the original project's trained models into papscreen.

* its Keras stage-1 model (``.h5``, ``.keras`` or a SavedModel folder) becomes a PyTorch stage-1 model; TensorFlow
  runs in a child process, and both frameworks must give the same probabilities on random inputs (max abs
  difference below 1e-5) or nothing is saved;
* its PyTorch ResNet50 checkpoint (``model_state_dict`` with a 4-class ``fc``: HSIL, LSIL, NILM, SCC) becomes a
  stage-2 model; it is read with ``torch.load(weights_only=True)``, so no pickled code ever runs.

The converted model is saved into the models folder and registered as a candidate (the first of its stage becomes
champion), as ``papscreen train`` does.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from papscreen.cli.common import console, err_console, fail_cleanly, optional_database, settings_from
from papscreen.cli.models_cmd import announce_saved_model
from papscreen.datasets.conventions import DEFAULT_CROP_PX, DEFAULT_STAGE1_SCALE
from papscreen.models.checkpoints import model_folder_name
from papscreen.models.legacy_keras import import_legacy_keras
from papscreen.models.legacy_torch import LEGACY_INPUT_PX, import_legacy_resnet50

__all__ = ["KERAS_SUFFIXES", "LegacyKind", "app", "guess_kind"]

app = typer.Typer()

KERAS_SUFFIXES = frozenset({".h5", ".hdf5", ".keras"})


class LegacyKind(StrEnum):
    """Which of the original's models a file is."""

    auto = "auto"
    keras = "keras"
    torch = "torch"


def guess_kind(path: Path) -> LegacyKind:
    """Keras for ``.h5``/``.keras`` files and SavedModel folders, PyTorch for anything else (``.pt``, ``.pth``)."""
    if path.is_dir() or path.suffix.lower() in KERAS_SUFFIXES:
        return LegacyKind.keras
    return LegacyKind.torch


@app.command("import-legacy")
def import_legacy(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="The original's Keras stage-1 model or PyTorch ResNet50 checkpoint.")],
    kind: Annotated[
        LegacyKind, typer.Option("--kind", help="What MODEL is (auto: from its suffix).")
    ] = LegacyKind.auto,
    working_scale: Annotated[
        float,
        typer.Option("--working-scale", help="Stage 1: the field scale its DB_3 was cut at (20 / window px)."),
    ] = DEFAULT_STAGE1_SCALE,
    crop_size: Annotated[int, typer.Option("--crop-size", help="Stage 2: full-resolution crop side, px.")] = (
        DEFAULT_CROP_PX
    ),
    input_size: Annotated[int, typer.Option("--input-size", help="Stage 2: network input side, px.")] = (
        LEGACY_INPUT_PX
    ),
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register the converted model as a candidate.")
    ] = True,
) -> None:
    """Convert one of the original project's models, check it, save it with a card and register it."""
    settings = settings_from(ctx)
    chosen = guess_kind(model) if kind is LegacyKind.auto else kind
    with fail_cleanly(), optional_database(ctx, register) as db:
        if chosen is LegacyKind.keras:
            folder = settings.models_dir / model_folder_name("stage1", "cnn20-keras")
            err_console.print(f"converting Keras stage-1 model {model} (TensorFlow in a child process) ...")
            card = import_legacy_keras(model, folder, working_scale=working_scale)
            difference = card.metrics.get("conversion_max_abs_diff")
            console.print(f"Keras and PyTorch probabilities agree: max abs difference {difference:.2e}")
        else:
            folder = settings.models_dir / model_folder_name("stage2", "resnet50-legacy")
            card = import_legacy_resnet50(model, folder, crop_size=crop_size, input_size=input_size)
            console.print(f"classes in the original's output order: {', '.join(card.classes)}")
        announce_saved_model(db, folder, card, actor="papscreen import-legacy")
