"""Small saved models the command-line tests point commands at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from papscreen.models.card import ModelCard
from papscreen.models.checkpoints import save_model
from papscreen.models.stage1_net import Stage1Net


def saved_stage1(folder: Path, seed: int = 0, metrics: dict[str, Any] | None = None) -> Path:
    """An untrained ``cnn20`` stage-1 model saved in ``folder`` (weights seeded, so each seed differs)."""
    torch.manual_seed(seed)
    card = ModelCard(
        stage="stage1",
        architecture="cnn20",
        classes=("background", "cell"),
        input_size=20,
        working_scale=0.5,
        weights_sha256="0" * 64,
        metrics=metrics or {},
    )
    save_model(Stage1Net().state_dict(), card, folder)
    return folder
