"""Save and load model weights as safetensors beside a JSON card; loading never unpickles anything.

A saved model is a folder::

    <models_dir>/<name>/
        model.safetensors   weights (tensors only: no code can hide in them)
        card.json           the ModelCard: architecture, classes, input size, normalisation, metrics, ...

Loading checks the weights' sha256 against the card, so a truncated or swapped file is caught before use.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from papscreen.errors import CheckpointError
from papscreen.models.card import ModelCard, Stage, read_card, write_card

__all__ = [
    "CARD_NAME",
    "WEIGHTS_NAME",
    "file_sha256",
    "load_weights",
    "model_folder_name",
    "resolve_card_path",
    "save_model",
]

CARD_NAME = "card.json"
WEIGHTS_NAME = "model.safetensors"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_folder_name(stage: Stage, architecture: str, when: datetime | None = None) -> str:
    """A sortable, readable folder name, e.g. ``stage2-resnet50-20261125T221500``."""
    when = when or datetime.now(UTC)
    return f"{stage}-{re.sub(r'[^a-z0-9_]+', '-', architecture.lower())}-{when:%Y%m%dT%H%M%S%f}"


def save_model(state_dict: dict[str, torch.Tensor], card: ModelCard, folder: Path) -> ModelCard:
    """Write weights and card into ``folder`` (created; an existing model there is never overwritten).

    The card's ``weights_sha256`` and ``weights_file`` are filled in from what was written.

    Returns:
        The card as saved.
    """
    if (folder / CARD_NAME).exists() or (folder / WEIGHTS_NAME).exists():
        raise CheckpointError(folder, "a model is already saved here; choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_NAME
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(weights), metadata={"stage": card.stage, "architecture": card.architecture})
    saved = card.model_copy(
        update={"weights_file": WEIGHTS_NAME, "weights_sha256": file_sha256(weights), "name": card.name or folder.name}
    )
    write_card(saved, folder / CARD_NAME)
    return saved


def resolve_card_path(path: Path) -> Path:
    """Accept a model folder, its card or its weights file; return the card's path."""
    path = Path(path)
    if path.is_dir():
        return path / CARD_NAME
    if path.suffix == ".safetensors":
        return path.with_name(CARD_NAME)
    return path


def load_weights(path: Path, *, stage: Stage | None = None) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Read a saved model's card and weights, checking stage and integrity.

    Args:
        path: the model folder, its ``card.json`` or its ``model.safetensors``.
        stage: when given, a model of the other stage is refused.

    Raises:
        CheckpointError: missing or invalid card, wrong stage, missing, altered or corrupt weights.
    """
    card_path = resolve_card_path(path)
    card = read_card(card_path, stage=stage)
    weights = card_path.with_name(card.weights_file)
    if not weights.is_file():
        raise CheckpointError(weights, "weights file named by the card is missing")
    if file_sha256(weights) != card.weights_sha256:
        raise CheckpointError(weights, "weights do not match the card's sha256 (altered, truncated or swapped file)")
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(weights, f"not a readable safetensors file ({e})") from e
    return state_dict, card
