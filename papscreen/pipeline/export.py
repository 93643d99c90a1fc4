"""Writing a result to a folder: ``cells.csv``, ``summary.json``, ``overlay.png``, ``gallery.png``, ``cells.geojson``.

The GeoJSON follows QuPath's layout (a FeatureCollection of ``detection`` objects whose ``classification`` has a
name and an RGB colour, with the probabilities as ``measurements``), so a pathologist can open the scan in QuPath
and import the cells over it with File > Import objects. Coordinates are level-0 pixels throughout.

Nothing is overwritten unless asked: a lab's earlier export of a slide is a record.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from papscreen.bethesda import CLASS_COLOURS
from papscreen.imaging.image_io import write_rgb
from papscreen.pipeline.engine import gallery_image
from papscreen.pipeline.result import CellTable, SlideResult

__all__ = ["EXPORT_FILES", "cells_geojson", "write_cells_csv", "write_exports"]

EXPORT_FILES = ("cells.csv", "summary.json", "overlay.png", "gallery.png", "cells.geojson")
_GREY = (128, 128, 128)


def _number(value: float, digits: int) -> float | None:
    """``value`` rounded, or ``None`` (JSON ``null``) when it is NaN or infinite, which strict JSON cannot hold."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _text(value: float, digits: int) -> str:
    """``value`` for the CSV: fixed decimals, or empty when it is NaN or infinite (a blank cell in a spreadsheet)."""
    value = float(value)
    return f"{value:.{digits}f}" if math.isfinite(value) else ""


def cells_geojson(cells: CellTable) -> dict[str, Any]:
    """The cells as a QuPath-readable GeoJSON FeatureCollection (points in level-0 pixels), strict JSON.

    A value that is not a finite number (a model that produced NaN) is written as ``null``: QuPath and every
    strict JSON reader refuse ``NaN``.
    """
    labels = cells.labels
    features = []
    for i in range(len(cells)):
        label = labels[i]
        measurements = {
            f"p_{name}": _number(p, 5) for name, p in zip(cells.classes, cells.probabilities[i], strict=True)
        }
        measurements["detection_score"] = _number(cells.detection_scores[i], 5)
        features.append(
            {
                "type": "Feature",
                "id": f"cell-{i}",
                "geometry": {
                    "type": "Point",
                    "coordinates": [_number(cells.xy[i, 0], 2), _number(cells.xy[i, 1], 2)],
                },
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": label, "color": list(CLASS_COLOURS.get(label, _GREY))},
                    "measurements": measurements,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_cells_csv(path: Path, cells: CellTable) -> None:
    """One row per cell: position, stage-1 score, class, suspicion and every class probability."""
    labels, suspicion = cells.labels, cells.suspicion
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["cell", "x", "y", "detection_score", "class", "suspicion", *(f"p_{c}" for c in cells.classes)])
        for i in range(len(cells)):
            writer.writerow(
                [i, _text(cells.xy[i, 0], 2), _text(cells.xy[i, 1], 2), _text(cells.detection_scores[i], 5), labels[i]]
                + [_text(suspicion[i], 5)]
                + [_text(p, 5) for p in cells.probabilities[i]]
            )


def write_exports(result: SlideResult, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """Write every export of ``result`` into ``out_dir`` (created if needed); returns the paths by file name.

    Raises:
        FileExistsError: one of the files is already there and ``overwrite`` is false (nothing is written).
    """
    folder = Path(out_dir)
    paths = {name: folder / name for name in EXPORT_FILES}
    existing = [p for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {', '.join(p.name for p in existing)}; choose another folder or pass --overwrite"
        )
    folder.mkdir(parents=True, exist_ok=True)
    write_cells_csv(paths["cells.csv"], result.cells)
    summary = {"source": result.source, **result.summary.to_json()}
    paths["summary.json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_rgb(paths["overlay.png"], result.overlay)
    write_rgb(paths["gallery.png"], gallery_image(result))
    paths["cells.geojson"].write_text(json.dumps(cells_geojson(result.cells), allow_nan=False) + "\n", encoding="utf-8")
    return paths
