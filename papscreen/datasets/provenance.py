"""Whether a dataset holds real cells or papscreen's synthetic ones: the nightly gate needs to know.

A model validated only on synthetic cells says nothing about how it grades real ones, so it must never replace a
model trained and validated on real data (:func:`papscreen.models.promotion.decide_promotion`). papscreen's
synthetic generator signs every dataset it writes (``generator`` in its ``manifest.json``), and a dataset
derived from another says so (``provenance``); anything else (a dataset cut from annotated fields, the original
project's DB_3/DB_4 folders, a lab's own crops) counts as real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from papscreen.datasets.conventions import MANIFEST_NAME

__all__ = ["SYNTHETIC_GENERATOR", "DataProvenance", "dataset_provenance"]

DataProvenance = Literal["real", "synthetic"]

SYNTHETIC_GENERATOR = "papscreen.datasets.synthetic"
"""The ``generator.name`` papscreen's synthetic data writes into its manifests."""


def dataset_provenance(root: str | Path) -> DataProvenance:
    """``synthetic`` when ``root``'s manifest names papscreen's synthetic generator (or says so), else ``real``.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> dataset_provenance(folder)
        'real'
        >>> _ = (folder / "manifest.json").write_text('{"generator": {"name": "papscreen.datasets.synthetic"}}')
        >>> dataset_provenance(folder)
        'synthetic'
    """
    try:
        manifest = json.loads((Path(root) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "real"
    if not isinstance(manifest, dict):
        return "real"
    if manifest.get("provenance") in ("real", "synthetic"):
        return manifest["provenance"]
    generator = manifest.get("generator")
    name = generator.get("name") if isinstance(generator, dict) else None
    return "synthetic" if name == SYNTHETIC_GENERATOR else "real"
