"""Model cards: what a saved model is, how to feed it, what it was trained on and how well it did.

A card is a JSON file beside the weights (``card.json`` next to ``model.safetensors``). Everything needed to
rebuild the network and use it correctly lives here, so inference never guesses an input size, a class order
or a working scale. Cards are validated on load; a wrong or foreign file gives a clear error naming it.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from papscreen.errors import CheckpointError

__all__ = ["CARD_FORMAT_VERSION", "ModelCard", "Normalisation", "Stage", "library_versions", "read_card", "write_card"]

CARD_FORMAT_VERSION = 1
Stage = Literal["stage1", "stage2"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalisation(BaseModel):
    """Per-channel mean and standard deviation applied to RGB in [0, 1]."""

    model_config = ConfigDict(frozen=True)

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


class ModelCard(BaseModel):
    """Everything about one saved model except its weights.

    Examples:
        >>> card = ModelCard(stage="stage1", architecture="cnn20", classes=("background", "cell"), input_size=20,
        ...                  working_scale=0.5, weights_sha256="0" * 64)
        >>> card.num_classes
        2
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = CARD_FORMAT_VERSION
    name: str = ""
    stage: Stage
    architecture: str
    classes: tuple[str, ...]
    input_size: int = Field(gt=0, description="Side of the network's square input, pixels.")
    crop_size: int | None = Field(None, gt=0, description="Stage 2: side of the full-resolution crop, pixels.")
    working_scale: float | None = Field(None, gt=0, le=1, description="Stage 1: field scale the network sees.")
    normalisation: Normalisation = Field(default_factory=Normalisation)
    temperature: float = Field(1.0, gt=0, description="Softmax temperature fitted on validation.")
    architecture_options: dict[str, Any] = Field(default_factory=dict)
    dataset_fingerprint: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    weights_file: str = "model.safetensors"
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    source: str | None = Field(None, description="Where the weights came from, for imported models.")
    field_scorer: dict[str, Any] | None = Field(
        None,
        description="Stage 2: the field verdict's top_k and threshold (papscreen.models.field_score), chosen on "
        "validation fields, with the figures it gave there.",
    )

    @property
    def num_classes(self) -> int:
        """Number of outputs of the network."""
        return len(self.classes)

    @model_validator(mode="after")
    def _stage_fields(self) -> ModelCard:
        if self.stage == "stage1" and self.working_scale is None:
            raise ValueError("a stage-1 card needs working_scale")
        if self.stage == "stage2" and self.crop_size is None:
            raise ValueError("a stage-2 card needs crop_size")
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"classes must be at least two distinct names, got {self.classes}")
        return self


def library_versions() -> dict[str, str]:
    """Versions that decide whether a model reproduces: Python, torch, torchvision, numpy, papscreen."""
    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "numpy", "papscreen"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def write_card(card: ModelCard, path: Path) -> None:
    """Write a card as indented JSON (readable in a diff and by a person)."""
    path.write_text(card.model_dump_json(indent=2) + "\n")


def read_card(path: Path, *, stage: Stage | None = None) -> ModelCard:
    """Read and validate a card; ``stage`` refuses a card of the other stage.

    Raises:
        CheckpointError: missing, unreadable or invalid card, or the wrong stage; the message names the file.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(path, "model card not found (expected card.json beside the weights)") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"model card is not readable JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(path, "model card is not a JSON object")
    if data.get("format_version", CARD_FORMAT_VERSION) > CARD_FORMAT_VERSION:
        raise CheckpointError(path, f"card format {data['format_version']} is newer than this papscreen; upgrade")
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'card'}: {err['msg']}" for err in e.errors())
        raise CheckpointError(path, f"invalid model card: {problems}") from e
    if stage is not None and card.stage != stage:
        raise CheckpointError(path, f"this is a {card.stage} model; a {stage} model is needed here")
    return card
