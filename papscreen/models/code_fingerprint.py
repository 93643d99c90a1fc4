"""A fingerprint of the training code and recipe, so a night with new code or a new recipe retrains.

Nightly retraining is skipped when nothing that decides the result changed: the data (dataset fingerprints) and
how it is trained. "How" is the source of the modules training runs through, read from the installed package
(so an upgrade of papscreen counts), plus the recipe (architecture, epochs, input size, seed...) as plain data.
Paths and modification times are not part of it: the same code on another machine has the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import papscreen.datasets
import papscreen.models

__all__ = ["CODE_FINGERPRINT_VERSION", "TRAINING_MODULES", "code_fingerprint", "training_sources"]

CODE_FINGERPRINT_VERSION = "papscreen-code-fingerprint/1"

TRAINING_MODULES: tuple[str, ...] = (
    "datasets/conventions.py",
    "datasets/fingerprint.py",
    "datasets/layout.py",
    "datasets/reviewed.py",
    "datasets/stain.py",
    "models/backbones.py",
    "models/calibration.py",
    "models/card.py",
    "models/checkpoints.py",
    "models/evaluation.py",
    "models/metrics.py",
    "models/stage1.py",
    "models/stage1_data.py",
    "models/stage1_net.py",
    "models/stage2.py",
    "models/stage2_data.py",
    "models/train_stage1.py",
    "models/train_stage2.py",
    "models/transforms.py",
)
"""The modules, relative to the ``papscreen`` package, that reading data, training and evaluating go through."""


def training_sources() -> dict[str, Path]:
    """Where each training module is installed (``papscreen`` package folder of this process).

    Examples:
        >>> sources = training_sources()
        >>> sources["models/train_stage2.py"].is_file()
        True
    """
    package = {"models": Path(papscreen.models.__file__).parent, "datasets": Path(papscreen.datasets.__file__).parent}
    return {name: package[name.split("/")[0]] / name.split("/", 1)[1] for name in TRAINING_MODULES}


def code_fingerprint(recipe: Mapping[str, Any], sources: Mapping[str, Path] | None = None) -> str:
    """sha256 over the training modules' source and the recipe; 64 hex digits.

    Args:
        recipe: the training settings that shape the model (JSON-serialisable; key order does not matter).
        sources: module name -> file (default: :func:`training_sources`); a missing file is hashed as missing,
            so removing a module changes the fingerprint instead of failing a night.

    Examples:
        >>> a = code_fingerprint({"epochs": 10, "arch": "resnet18"})
        >>> a == code_fingerprint({"arch": "resnet18", "epochs": 10}), a == code_fingerprint({"epochs": 11})
        (True, False)
    """
    digest = hashlib.sha256(f"{CODE_FINGERPRINT_VERSION}\n".encode())
    for name, path in sorted((sources or training_sources()).items()):
        content = path.read_bytes() if path.is_file() else b"<missing>"
        digest.update(f"{name}\t{hashlib.sha256(content).hexdigest()}\n".encode())
    digest.update(json.dumps(dict(recipe), sort_keys=True, default=str).encode())
    return digest.hexdigest()
