"""Real labelled cells from a CRIC-style data folder: point-annotated fields plus loose nucleus crops.

The folder (see ``../shared/data/README.md`` in the development tree) holds

* ``cric-dev/``: fields (``images/``) with one row per annotated nucleus in ``labels.csv``
  (``image,x,y,bethesda,cric_cell_id``);
* ``cric-crops/``: nucleus-centred crops in label folders, with ``index.csv``
  (``file,cric_cell_id,bethesda,source_image,in_cric_dev``); they are cut from frames ``crop_scale`` (1.08) times
  larger than the fields, and ``source_image`` names the field each came from.

:func:`read_real_cells` turns both into one table of :class:`RealCell` rows, each with its **group**: the stem of
its source field, the unit of every split (cells of one field share stain, focus and patient). A crop of a cell
that the fields also annotate (``in_cric_dev=yes``) is the same cell twice, so it is left out unless asked for.
:func:`cell_crop` cuts any row at field scale, whichever of the two sources it comes from, so every model sees
one scale.

Labels are kept in the six Bethesda terms (``SIX_LABELS``); :func:`four_class` maps them to the four classes
papscreen grades, with the usual ASC-US -> LSIL and ASC-H -> HSIL unless another mapping is given.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from papscreen.bethesda import DEFAULT_EXTRA_LABEL_MAP, normalise_label
from papscreen.datasets.build import cut_centred
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import read_rgb

__all__ = [
    "CRIC_CROP_SCALE",
    "SIX_LABELS",
    "RealCell",
    "RealCells",
    "cell_crop",
    "four_class",
    "read_real_cells",
]

SIX_LABELS: tuple[str, ...] = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC")
"""The Bethesda squamous terms CRIC uses, least to most severe."""

CRIC_CROP_SCALE = 1384 / 1280
"""Crops are cut from 1384 px frames, the fields are 1280 px wide: a crop pixel is 1/1.08 of a field pixel."""

FIELDS_FOLDER = "cric-dev"
CROPS_FOLDER = "cric-crops"


@dataclass(frozen=True)
class RealCell:
    """One labelled nucleus.

    Attributes:
        group: stem of the field it lies in (the unit of every split).
        label: its Bethesda term, one of ``SIX_LABELS``.
        path: the field image (``x``, ``y`` set) or the crop file (``x``, ``y`` are ``None``).
        x: nucleus centre, column, field pixels; ``None`` for a crop.
        y: nucleus centre, row, field pixels; ``None`` for a crop.
        cell_id: the source's cell id (for tracing a figure back to a cell).
    """

    group: str
    label: str
    path: Path
    x: float | None
    y: float | None
    cell_id: str

    @property
    def from_field(self) -> bool:
        """Whether the cell is a point on a field (else a loose crop)."""
        return self.x is not None


@dataclass(frozen=True)
class RealCells:
    """Every labelled cell of a data folder, and the fields that can be searched for nuclei.

    Attributes:
        cells: the cells, fields' points first (in CSV order), then crops (in index order).
        fields: field image path by group, for the groups that have a field image.
        crop_scale: size of a crop pixel relative to a field pixel's (crops are shrunk by it).
    """

    cells: tuple[RealCell, ...]
    fields: Mapping[str, Path]
    crop_scale: float = CRIC_CROP_SCALE

    @property
    def groups(self) -> np.ndarray:
        """The group of every cell, as an array for splitting."""
        return np.array([cell.group for cell in self.cells])

    def labels(self, extra_label_map: Mapping[str, str] = DEFAULT_EXTRA_LABEL_MAP) -> np.ndarray:
        """The four-class label of every cell."""
        return np.array([four_class(cell.label, extra_label_map) for cell in self.cells])

    def counts(self) -> dict[str, int]:
        """Cells per Bethesda term."""
        counted = Counter(cell.label for cell in self.cells)
        return {label: counted[label] for label in SIX_LABELS if counted[label]}

    def points_by_field(self) -> Mapping[str, list[RealCell]]:
        """The field cells grouped by field (computed once: evaluation asks for it per field and threshold)."""
        return self._points_by_field

    @cached_property
    def _points_by_field(self) -> dict[str, list[RealCell]]:
        grouped: dict[str, list[RealCell]] = {}
        for cell in self.cells:
            if cell.from_field:
                grouped.setdefault(cell.group, []).append(cell)
        return grouped


def four_class(label: str, extra_label_map: Mapping[str, str] = DEFAULT_EXTRA_LABEL_MAP) -> str:
    """The four-class name of a Bethesda term.

    Examples:
        >>> four_class("ASC-H"), four_class("ASC-US"), four_class("SCC")
        ('HSIL', 'LSIL', 'SCC')
    """
    mapped = normalise_label(label, extra_label_map)
    if mapped is None:
        raise DatasetError(label, f"label {label!r} has no class in the four-class scheme")
    return mapped


def _six_label(text: str) -> str | None:
    spelled = text.strip().upper().replace("_", "-").replace(" ", "-")
    return spelled if spelled in SIX_LABELS else None


def _rows(csv_path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = set(required) - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(csv_path, f"missing column(s) {', '.join(sorted(missing))}")
            return list(reader)
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(csv_path, f"cannot read it: {error}") from error


def _field_cells(folder: Path) -> tuple[list[RealCell], dict[str, Path]]:
    images = folder / "images"
    fields = {path.stem: path for path in sorted(images.iterdir()) if path.is_file()} if images.is_dir() else {}
    cells = []
    for row in _rows(folder / "labels.csv", ("image", "x", "y", "bethesda")):
        label = _six_label(row["bethesda"])
        path = images / row["image"]
        if label is None or Path(row["image"]).stem not in fields:
            continue
        cells.append(
            RealCell(
                group=path.stem,
                label=label,
                path=path,
                x=float(row["x"]),
                y=float(row["y"]),
                cell_id=row.get("cric_cell_id", ""),
            )
        )
    return cells, fields


def _crop_cells(folder: Path, *, include_field_duplicates: bool) -> list[RealCell]:
    cells = []
    for row in _rows(folder / "index.csv", ("file", "bethesda", "source_image")):
        label = _six_label(row["bethesda"])
        duplicate = row.get("in_cric_dev", "no").strip().lower() == "yes"
        if label is None or (duplicate and not include_field_duplicates):
            continue
        cells.append(
            RealCell(
                group=Path(row["source_image"]).stem,
                label=label,
                path=folder / row["file"],
                x=None,
                y=None,
                cell_id=row.get("cric_cell_id", ""),
            )
        )
    return cells


def read_real_cells(data_dir: str | Path, *, include_field_duplicates: bool = False) -> RealCells:
    """Read the labelled cells of a data folder holding ``cric-dev/`` and/or ``cric-crops/``.

    Args:
        data_dir: the folder.
        include_field_duplicates: also keep crops of cells the fields annotate (the same cell twice).

    Raises:
        DatasetError: neither sub-folder is there, or a CSV lacks its columns.
    """
    data_dir = Path(data_dir)
    fields_dir, crops_dir = data_dir / FIELDS_FOLDER, data_dir / CROPS_FOLDER
    if not (fields_dir / "labels.csv").is_file() and not (crops_dir / "index.csv").is_file():
        raise DatasetError(data_dir, f"holds neither {FIELDS_FOLDER}/labels.csv nor {CROPS_FOLDER}/index.csv")
    cells: list[RealCell] = []
    fields: dict[str, Path] = {}
    if (fields_dir / "labels.csv").is_file():
        cells, fields = _field_cells(fields_dir)
    if (crops_dir / "index.csv").is_file():
        cells += _crop_cells(crops_dir, include_field_duplicates=include_field_duplicates)
    return RealCells(tuple(cells), fields)


def cell_crop(
    cell: RealCell, size: int, *, crop_scale: float = CRIC_CROP_SCALE, field: np.ndarray | None = None
) -> np.ndarray:
    """A ``size`` px square centred on the nucleus, at field scale.

    A field point is cut from the field (``field`` if already decoded); a loose crop is shrunk by
    ``crop_scale`` and then cut or padded by reflection to ``size``.
    """
    if cell.from_field:
        rgb = read_rgb(cell.path) if field is None else field
        return cut_centred(rgb, float(cell.x), float(cell.y), size)[0]  # type: ignore[arg-type]  # from_field
    rgb = read_rgb(cell.path)
    height, width = rgb.shape[:2]
    shrunk = (max(1, round(width / crop_scale)), max(1, round(height / crop_scale)))
    rgb = cv2.resize(rgb, shrunk, interpolation=cv2.INTER_AREA)
    return cut_centred(rgb, rgb.shape[1] / 2, rgb.shape[0] / 2, size)[0]


def write_cell_crops(cells: RealCells, out_dir: str | Path, size: int) -> list[Path]:
    """Cut every cell at field scale to a ``size`` px PNG under ``out_dir/<label>/``; return the files in cell order.

    Each field is decoded once. Files are named ``<group>__<cell_id>.png`` (``__<n>`` added when a name repeats),
    so a crop can always be traced to its field. Existing files are overwritten: the folder is a cache.
    """
    out_dir = Path(out_dir)
    paths: list[Path] = []
    used: set[Path] = set()
    decoded: tuple[Path | None, np.ndarray | None] = (None, None)
    for cell in cells.cells:
        field = None
        if cell.from_field:
            if decoded[0] != cell.path:
                decoded = (cell.path, read_rgb(cell.path))
            field = decoded[1]
        crop = cell_crop(cell, size, crop_scale=cells.crop_scale, field=field)
        path = out_dir / cell.label / f"{cell.group}__{cell.cell_id or 'cell'}.png"
        serial = 1
        while path in used:
            serial += 1
            path = path.with_name(f"{cell.group}__{cell.cell_id or 'cell'}__{serial}.png")
        used.add(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        paths.append(path)
    return paths
