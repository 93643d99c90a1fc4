"""The models papscreen ships: both stages trained on the real CRIC Pap smear fields with the documented recipe.

They are papscreen's defaults. With no champion registered, ``papscreen analyze`` uses them, and ``papscreen up``
and ``papscreen demo`` register them as the first champions, so a fresh installation grades real smears without
training anything. Nightly retraining cannot replace them with a model validated only on synthetic data
(:mod:`papscreen.models.promotion`).

They live in ``papscreen/models/shipped_models/{stage1,stage2}`` (safetensors weights stored as float16 to keep
the package small, and their cards: data fingerprint, recipe, cross-validated figures, the field verdict's
operating point), with the CRIC citation in its README. ``papscreen train real DATA_DIR --ship`` rebuilds them
from the data (docs/models.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from papscreen.errors import CheckpointError
from papscreen.models.card import ModelCard, Stage, read_card
from papscreen.models.checkpoints import CARD_NAME, load_weights, resolve_card_path, save_model

__all__ = [
    "SHIPPED_ROOT",
    "copy_shipped_model",
    "next_shipped_version",
    "pack_for_shipping",
    "shipped_card",
    "shipped_model_folder",
    "shipped_models_available",
    "write_shipped_models",
]

SHIPPED_ROOT = Path(__file__).with_name("shipped_models")
"""The package folder holding ``stage1/`` and ``stage2/``."""


def shipped_model_folder(stage: Stage) -> Path:
    """The shipped model folder of ``stage``.

    Raises:
        CheckpointError: this installation lacks it (a broken or trimmed install); the message says what to do.
    """
    folder = SHIPPED_ROOT / stage
    if not (folder / CARD_NAME).is_file():
        raise CheckpointError(
            folder,
            f"papscreen's shipped {stage} model is missing from this installation: reinstall papscreen, or train "
            f"and register your own (`papscreen train real DATA_DIR`)",
        )
    return folder


def shipped_models_available() -> bool:
    """Whether both shipped models are installed."""
    return all((SHIPPED_ROOT / stage / CARD_NAME).is_file() for stage in ("stage1", "stage2"))


def shipped_card(stage: Stage) -> ModelCard:
    """The card of a shipped model (read only: loading the model checks its weights against it)."""
    return read_card(shipped_model_folder(stage) / CARD_NAME, stage=stage)


def copy_shipped_model(stage: Stage, models_dir: Path) -> Path:
    """Copy the shipped model of ``stage`` into ``models_dir`` (once: an existing copy is checked and reused).

    The registry records a model's folder; a copy beside the lab's own models keeps it valid when papscreen is
    upgraded or reinstalled elsewhere.

    Raises:
        CheckpointError: the shipped model is missing, or an earlier copy was altered.
    """
    source = shipped_model_folder(stage)
    card = shipped_card(stage)
    target = Path(models_dir) / card.name
    if target.exists():
        if load_weights(target, stage=stage)[1].weights_sha256 != card.weights_sha256:
            raise CheckpointError(target, "holds other weights than the shipped model of the same name")
        return target
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.rename(target)
    return target


def pack_for_shipping(source: Path, target: Path, *, name: str, **card_updates: Any) -> ModelCard:
    """Write a trained model as a shipped one: float16 weights (half the size; loading casts them back) and a card.

    Integer tensors (batch-norm counters) are kept as they are. ``card_updates`` replace card fields (e.g.
    ``metrics`` with the cross-validated figures, ``training`` with the recipe and the data's fingerprint).

    Raises:
        CheckpointError: ``source`` is not a valid saved model, or ``target`` already holds one.
    """
    state, card = load_weights(source)
    half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}
    training = dict(card.training) | {"shipped_weights_dtype": "float16"}
    packed = card.model_copy(update={"name": name, "training": training} | card_updates)
    return save_model(half, packed, Path(target))


def next_shipped_version(root: Path, day: str) -> str:
    """The version for models shipped on ``day``: the day, with a letter when models of that day already ship.

    A shipped model's name is copied into every laboratory's registry, so a retrained model must never take the
    name of the one it replaces (a copy of the same name with other weights is refused, see
    :func:`copy_shipped_model`).

    Examples:
        >>> next_shipped_version(Path("/nonexistent"), "2026.12.07")
        '2026.12.07'
    """
    taken: set[str] = set()
    for stage in ("stage1", "stage2"):
        card_path = Path(root) / stage / CARD_NAME
        if card_path.is_file():
            taken.add(read_card(card_path).name.removeprefix(f"cric-{stage}-"))
    candidates = [day] + [f"{day}{letter}" for letter in "bcdefghijklmnopqrstuvwxyz"]
    used = [candidates.index(version) for version in taken if version in candidates]
    return candidates[max(used) + 1] if used else day


def write_shipped_models(
    trained: dict[Stage, Path], root: Path, *, version: str, cross_validation: dict[str, Any] | None = None
) -> dict[Stage, ModelCard]:
    """Pack trained models as ``root/<stage>`` (replacing what is there), named ``cric-<stage>-<version>``.

    ``cross_validation`` (the summary a ``benchmarks/real_accuracy.py`` run wrote, with its recipe) goes on each
    card's metrics, beside the validation figures of the model itself.
    """
    cards: dict[Stage, ModelCard] = {}
    for stage, source in trained.items():
        staging = root / f".{stage}.new"
        shutil.rmtree(staging, ignore_errors=True)
        metrics = dict(read_card(resolve_card_path(source)).metrics)
        if cross_validation is not None:
            metrics["cross_validation"] = cross_validation
        cards[stage] = pack_for_shipping(source, staging, name=f"cric-{stage}-{version}", metrics=metrics)
        shutil.rmtree(root / stage, ignore_errors=True)
        staging.rename(root / stage)
    return cards
