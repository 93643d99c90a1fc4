"""Reviewer-corrected cells as training data: cut from their scans, added to DB_4's training split.

A cytologist who corrects a cell's class has produced the most valuable kind of label: one where the model was
wrong (or unsure) on this laboratory's own slides. Retraining cuts each such cell from its stored scan exactly as
DB_4 crops were cut (a full-resolution square centred on the nucleus, the slide's edge mirrored) and adds it to
the *training* split only. The validation split stays DB_4's, unchanged, so the challenger and the champion are
compared on the same cases and a better score means a better model, not an easier test.

The combined dataset is a folder of hard links (symbolic links where hard links are impossible, copies as a last
resort) so a large DB_4 costs no disk space to combine.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from papscreen.bethesda import LEGACY_DB4_FOLDERS
from papscreen.datasets.conventions import MANIFEST_NAME, SPLITS
from papscreen.datasets.layout import read_dataset
from papscreen.datasets.provenance import dataset_provenance
from papscreen.errors import DatasetError, ImageError
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.image_io import write_rgb
from papscreen.imaging.slides import open_slide

__all__ = ["ReviewedCellLike", "ReviewedCrops", "combined_db4", "write_reviewed_crops"]

_LEGACY_FOLDER_OF = {label: folder for folder, label in LEGACY_DB4_FOLDERS.items()}


class ReviewedCellLike(Protocol):
    """What cutting needs of a corrected cell (``papscreen.db.queries.reviews.ReviewedCell`` has it)."""

    cell_id: int
    stored_path: str | None
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class ReviewedCrops:
    """What :func:`write_reviewed_crops` wrote and what it could not.

    Attributes:
        root: the folder (``train/<CLASS>/reviewed-<cell id>.png``).
        counts: crops written per class.
        skipped: one line per cell left out, saying why (missing or unreadable scan).
    """

    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def written(self) -> int:
        """Crops written in all."""
        return sum(self.counts.values())


def _cut_one(slide: object, x: float, y: float, crop_size: int) -> np.ndarray:
    """Read the window around (x, y) clipped to the slide, then cut it, mirroring at the slide's edges."""
    width, height = slide.dimensions  # type: ignore[attr-defined]
    cx, cy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    left, top = max(cx - crop_size // 2, 0), max(cy - crop_size // 2, 0)
    right = min(cx - crop_size // 2 + crop_size, width)
    bottom = min(cy - crop_size // 2 + crop_size, height)
    if right <= left or bottom <= top:
        raise ValueError(f"cell at ({x:.0f}, {y:.0f}) lies outside the {width}x{height} scan")
    region = slide.read_region((left, top), 0, (right - left, bottom - top))  # type: ignore[attr-defined]
    return cut_crops(region, np.array([[cx - left, cy - top]], np.float64), crop_size)[0]


def write_reviewed_crops(
    cells: Iterable[ReviewedCellLike],
    out_root: str | Path,
    *,
    crop_size: int,
    max_file_bytes: int | None = None,
    max_image_pixels: int | None = None,
) -> ReviewedCrops:
    """Cut each corrected cell from its stored scan into ``out_root/train/<CLASS>/reviewed-<cell id>.png``.

    Each scan is opened once for all its cells. A cell whose scan is gone or unreadable is skipped and reported:
    one lost file must not stop a night's retraining.

    Args:
        cells: the corrected cells (their ``label`` is the reviewer's class).
        out_root: the folder to write; files of earlier runs with the same names are replaced.
        crop_size: side of each crop at full resolution (the DB_4's crop size).
        max_file_bytes: optional limit passed to :func:`~papscreen.imaging.slides.open_slide`.
        max_image_pixels: optional limit passed to :func:`~papscreen.imaging.slides.open_slide`.

    Examples:
        >>> import tempfile
        >>> from types import SimpleNamespace
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_rgb(folder / "scan.png", np.zeros((100, 120, 3), np.uint8))
        >>> cells = [SimpleNamespace(cell_id=7, stored_path=str(folder / "scan.png"), x=5.0, y=50.0, label="HSIL"),
        ...          SimpleNamespace(cell_id=8, stored_path=None, x=5.0, y=5.0, label="SCC")]
        >>> result = write_reviewed_crops(cells, folder / "reviewed", crop_size=32)
        >>> result.counts, result.skipped
        ({'HSIL': 1}, ('cell 8: its scan is not stored; skipped',))
        >>> (folder / "reviewed" / "train" / "HSIL" / "reviewed-7.png").is_file()
        True
    """
    if crop_size < 1:
        raise ValueError(f"crop_size must be at least 1, got {crop_size}")
    out_root = Path(out_root)
    limits = {k: v for k, v in (("max_file_bytes", max_file_bytes), ("max_image_pixels", max_image_pixels)) if v}
    by_scan: dict[str, list[ReviewedCellLike]] = defaultdict(list)
    skipped: list[str] = []
    for cell in cells:
        if not cell.stored_path:
            skipped.append(f"cell {cell.cell_id}: its scan is not stored; skipped")
        else:
            by_scan[cell.stored_path].append(cell)
    counts: Counter[str] = Counter()
    for path, group in by_scan.items():
        if not Path(path).is_file():
            skipped.extend(f"cell {c.cell_id}: scan {path} is missing; skipped" for c in group)
            continue
        try:
            with open_slide(path, **limits) as slide:  # type: ignore[arg-type]
                for cell in group:
                    try:
                        crop = _cut_one(slide, cell.x, cell.y, crop_size)
                    except (ImageError, ValueError) as e:
                        skipped.append(f"cell {cell.cell_id}: {e}; skipped")
                        continue
                    write_rgb(out_root / "train" / cell.label / f"reviewed-{cell.cell_id}.png", crop)
                    counts[cell.label] += 1
        except ImageError as e:
            skipped.extend(f"cell {c.cell_id}: scan {path} cannot be read ({e}); skipped" for c in group)
    return ReviewedCrops(out_root, dict(sorted(counts.items())), tuple(skipped))


def _link(source: Path, target: Path) -> None:
    """Hard link, else symbolic link, else copy: the combined dataset should cost no space."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        try:
            target.symlink_to(source.resolve())
        except OSError:
            shutil.copy2(source, target)


def combined_db4(db4_root: str | Path, reviewed_root: str | Path | None, out_root: str | Path) -> Path:
    """A DB_4 whose training split is DB_4's plus the reviewed crops, and whose validation split is DB_4's.

    The reviewed crops go into the class folders DB_4 uses (``1``..``4`` for a legacy-numbered DB_4, class
    names otherwise), so the result reads as one dataset. A ``manifest.json`` says how it was made.

    Args:
        db4_root: the DB_4 folder.
        reviewed_root: what :func:`write_reviewed_crops` wrote (``None`` or a missing folder: no reviewed crops).
        out_root: a folder that does not exist yet (or is empty).

    Returns:
        ``out_root``.

    Raises:
        DatasetError: ``db4_root`` is not a DB_4, or ``out_root`` is not empty.

    Examples:
        >>> import tempfile
        >>> from papscreen.datasets.layout import read_dataset
        >>> root = Path(tempfile.mkdtemp())
        >>> for split in ("train", "validation"):
        ...     for folder in ("1", "3"):
        ...         write_rgb(root / "DB_4" / split / folder / "a.png", np.zeros((8, 8, 3), np.uint8))
        >>> write_rgb(root / "reviewed" / "train" / "HSIL" / "reviewed-1.png", np.zeros((8, 8, 3), np.uint8))
        >>> index = read_dataset(combined_db4(root / "DB_4", root / "reviewed", root / "combined"))
        >>> index.counts()["train"]["HSIL"], index.counts()["validation"]["HSIL"]
        (2, 1)
    """
    db4_root, out_root = Path(db4_root), Path(out_root)
    index = read_dataset(db4_root)
    if index.kind != "DB_4":
        raise DatasetError(db4_root, f"stage 2 trains on a DB_4 dataset, this is a {index.kind}")
    if out_root.exists() and any(out_root.iterdir()):
        raise DatasetError(out_root, "the folder for the combined dataset is not empty; give a new one")
    for split in SPLITS:
        for sample in index.splits[split]:
            relative = sample.path.relative_to(db4_root)
            _link(sample.path, out_root / split / Path(*relative.parts[1:]))
    reviewed: Counter[str] = Counter()
    train_dir = Path(reviewed_root) / "train" if reviewed_root is not None else None
    if train_dir is not None and train_dir.is_dir():
        for crop in sorted(train_dir.glob("*/reviewed-*.png")):
            label = crop.parent.name
            folder = _LEGACY_FOLDER_OF[label] if index.scheme == "numbered" else label
            _link(crop, out_root / "train" / folder / crop.name)
            reviewed[label] += 1
    manifest = {
        "kind": "DB_4",
        "combined_from": {"db4": str(db4_root.resolve()), "reviewed": str(reviewed_root) if reviewed_root else None},
        "reviewed_crops": dict(sorted(reviewed.items())),
        "provenance": dataset_provenance(db4_root),  # validation is DB_4's: real or synthetic as DB_4 is
        "note": "train = DB_4 train + reviewer-corrected cells; validation = DB_4 validation unchanged",
    }
    (out_root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_root
