"""The pair of models one analysis uses, loaded once onto one device at one precision.

A worker keeps a :class:`ModelPair` for as long as the champions do not change, so loading (and, on a GPU,
moving weights) happens once per process, not per slide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from papscreen.errors import ConfigError
from papscreen.models.card import ModelCard, read_card
from papscreen.models.checkpoints import resolve_card_path
from papscreen.models.device import bf16_supported, resolve_device
from papscreen.models.quantize import activation_bits, int8_available
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Precision, Stage2Classifier, int8_check_passed

__all__ = ["ModelPair", "load_model_pair", "resolve_precision"]


@dataclass(frozen=True, eq=False)
class ModelPair:
    """Stage 1 and stage 2, on the same device, with the names a result records.

    Attributes:
        stage1: the cell detector.
        stage2: the cell classifier.
        names: ``{"stage1": ..., "stage2": ...}``: the model cards' names, or folders when unnamed.
    """

    stage1: Stage1Detector
    stage2: Stage2Classifier
    names: dict[str, str]

    @property
    def device(self) -> torch.device:
        """Where stage 2 runs (stage 1 runs on the same device)."""
        return self.stage2.device

    @classmethod
    def of(cls, stage1: Stage1Detector, stage2: Stage2Classifier) -> ModelPair:
        """A pair of models already in memory (tests, benchmarks), named by their cards or architectures."""
        names = {"stage1": stage1.architecture, "stage2": stage2.card.name or stage2.architecture}
        return cls(stage1, stage2, names)


def resolve_precision(precision: str, device: torch.device, card: ModelCard | None = None) -> Precision:
    """The stage-2 precision for a setting: ``auto`` takes the fastest one the hardware and the model allow.

    ``auto`` is int8 on a CPU with VNNI (8-bit activations) when the stage-2 ``card`` carries an int8 calibration
    whose check against fp32 passed (``papscreen models calibrate-int8``); otherwise bf16 (fp16 on a GPU without
    bf16) on a GPU and on a CPU with native bf16 instructions, fp32 elsewhere (emulated bf16 is slower than fp32).
    int8 is never picked for a model whose agreement with fp32 was not measured.

    Raises:
        ConfigError: an unknown precision, or int8 on a GPU.

    Examples:
        >>> resolve_precision("fp32", torch.device("cpu"))
        'fp32'
        >>> resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
        True
    """
    if precision == "auto":
        if device.type == "cpu" and card is not None and _int8_worth_it(card):
            return "int8"
        return "bf16" if bf16_supported(device) else "fp32"
    if precision not in ("fp32", "bf16", "int8"):
        raise ConfigError(f"precision must be auto, fp32, bf16 or int8, not {precision!r}")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(f"int8 runs on the CPU only; use auto, fp32 or bf16 on {device}")
    return precision  # type: ignore[return-value]


def _int8_worth_it(card: ModelCard) -> bool:
    return int8_available() and activation_bits() == 8 and int8_check_passed(card)


def load_model_pair(
    stage1_path: str | Path, stage2_path: str | Path, *, device: str | torch.device = "auto", precision: str = "auto"
) -> ModelPair:
    """Load both models from their folders onto ``device`` (``auto``: CUDA when present).

    Raises:
        CheckpointError: a missing or bad model (the message names the file).
        ConfigError: CUDA asked for where there is none.
    """
    torch_device = resolve_device(device)
    chosen = resolve_precision(precision, torch_device, read_card(resolve_card_path(Path(stage2_path))))
    stage1 = Stage1Detector.from_checkpoint(stage1_path, torch_device)
    stage2 = Stage2Classifier.from_checkpoint(stage2_path, torch_device, precision=chosen)
    names = {
        "stage1": read_card(resolve_card_path(Path(stage1_path))).name
        or (Path(stage1_path).name if Path(stage1_path).is_dir() else str(stage1_path)),
        "stage2": stage2.card.name or (Path(stage2_path).name if Path(stage2_path).is_dir() else str(stage2_path)),
    }
    return ModelPair(stage1, stage2, names)
