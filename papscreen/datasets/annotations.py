"""Read point annotations: a CSV of nucleus centres beside an ``images/`` folder.

The CSV has a header and at least the columns ``image,x,y,label`` (``bethesda`` is accepted for ``label``, as in
CRIC; other columns are ignored). ``x,y`` is the nucleus centre in the image's own pixels. Every row is
checked; a bad row is reported as an :class:`~papscreen.errors.AnnotationError` message naming the file and the
line, and skipped. The caller decides whether problems stop the work (``--strict``) or not.

Images are only opened by their header here (:func:`~papscreen.imaging.image_io.image_size`): reading the
annotations of a hundred fields costs milliseconds, and decoding is left to whoever cuts patches.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from papscreen.bethesda import BETHESDA_CLASSES, DEFAULT_EXTRA_LABEL_MAP, normalise_label
from papscreen.datasets.conventions import IMAGE_SUFFIXES
from papscreen.datasets.layout import is_ignored
from papscreen.errors import AnnotationError, DatasetError, ImageError
from papscreen.imaging.image_io import image_size

__all__ = [
    "ANNOTATION_CSV_NAMES",
    "IMAGES_FOLDER",
    "AnnotationSet",
    "PointAnnotation",
    "find_annotation_csv",
    "read_annotations",
]

IMAGES_FOLDER = "images"
ANNOTATION_CSV_NAMES = ("labels.csv", "annotations.csv", "points.csv")
"""CSV names tried, in order, when the annotated folder holds more than one CSV."""

_LABEL_COLUMNS = ("label", "bethesda")


@dataclass(frozen=True)
class PointAnnotation:
    """One annotated nucleus.

    Attributes:
        image: the image as written in the CSV (a path relative to ``images/``, with ``/``).
        path: the image file.
        x: nucleus centre, column, in the image's pixels.
        y: nucleus centre, row, in the image's pixels.
        label: canonical class (one of ``BETHESDA_CLASSES``), or ``None`` for a cell whose label has none: it
            is not a sample, but it is still a cell that background patches must avoid.
        source_label: the label as written in the CSV.
        line: the CSV line of the row (the header is line 1).
    """

    image: str
    path: Path
    x: float
    y: float
    label: str | None
    source_label: str
    line: int


@dataclass(frozen=True)
class AnnotationSet:
    """What :func:`read_annotations` found.

    Attributes:
        csv_path: the annotation CSV.
        images_dir: the folder of images.
        points: the usable annotations, in CSV order.
        unlabelled_points: rows with a valid position but a label outside the 4 classes (still cells).
        image_files: every image file in ``images_dir``, relative with ``/``, sorted.
        image_sizes: (width, height) of every image a row refers to and whose header could be read.
        problems: one message per skipped row or file.
    """

    csv_path: Path
    images_dir: Path
    points: tuple[PointAnnotation, ...]
    unlabelled_points: tuple[PointAnnotation, ...]
    image_files: tuple[str, ...]
    image_sizes: Mapping[str, tuple[int, int]]
    problems: tuple[str, ...]

    @property
    def root(self) -> Path:
        """The annotated folder (parent of the CSV)."""
        return self.csv_path.parent

    def points_by_image(self) -> dict[str, list[PointAnnotation]]:
        """Usable points grouped by image, images sorted by name."""
        grouped: dict[str, list[PointAnnotation]] = {}
        for point in sorted(self.points, key=lambda p: (p.image, p.line)):
            grouped.setdefault(point.image, []).append(point)
        return grouped


def find_annotation_csv(annotated_dir: str | Path) -> Path:
    r"""The annotation CSV of an annotated folder: its only CSV, or else the first of ``ANNOTATION_CSV_NAMES``.

    Raises:
        DatasetError: no CSV, or several and none with a known name.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "cells.csv").write_text("image,x,y,label\n")
        >>> find_annotation_csv(folder).name
        'cells.csv'
    """
    folder = Path(annotated_dir)
    if not folder.is_dir():
        raise DatasetError(folder, "no such folder" if not folder.exists() else "not a folder")
    csvs = sorted(p for p in folder.glob("*.csv") if p.is_file() and not p.name.startswith("."))
    if len(csvs) == 1:
        return csvs[0]
    if not csvs:
        raise DatasetError(folder, "no annotation CSV (expected e.g. labels.csv with columns image,x,y,label)")
    for name in ANNOTATION_CSV_NAMES:
        if folder / name in csvs:
            return folder / name
    names = ", ".join(p.name for p in csvs)
    raise DatasetError(folder, f"several CSV files ({names}) and none named labels.csv; keep one")


def _list_images(images_dir: Path, problems: list[str]) -> tuple[str, ...]:
    found = []
    for path in sorted(images_dir.rglob("*")):
        relative = path.relative_to(images_dir)
        if path.is_dir() or is_ignored(path) or any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{path}: not an image file ({path.suffix or 'no suffix'}); skipped")
            continue
        found.append(relative.as_posix())
    return tuple(found)


def _safe_relative(name: str) -> str | None:
    """The CSV's image name as a clean relative path, or None when it would leave the images folder."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        return None
    return pure.as_posix()


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_annotations(
    source: str | Path,
    *,
    extra_label_map: Mapping[str, str] = DEFAULT_EXTRA_LABEL_MAP,
    max_pixels: int = 250_000_000,
) -> AnnotationSet:
    r"""Read and check a point-annotation CSV; return the good rows and a message for every bad one.

    Args:
        source: the annotated folder (holding the CSV and ``images/``), or the CSV itself.
        extra_label_map: labels outside the 4 classes that still count (e.g. ASC-US -> LSIL).
        max_pixels: header pixel limit, as for reading scans.

    Returns:
        An :class:`AnnotationSet`. Problems, each naming the file and line: a missing column (then no row is
        usable), a non-numeric or non-finite x/y, an image that is missing, unreadable or not an image, a point
        outside its image, a label with no class. Non-image files in ``images/`` are reported too.

    Raises:
        DatasetError: no CSV, no ``images/`` folder, or a CSV that is not UTF-8 text.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from papscreen.imaging.image_io import write_rgb
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_rgb(folder / "images" / "a.png", np.zeros((40, 60, 3), np.uint8))
        >>> _ = (folder / "labels.csv").write_text("image,x,y,label\na.png,10,20,ASC-US\na.png,70,5,NILM\n")
        >>> found = read_annotations(folder)
        >>> [(p.label, p.line) for p in found.points]
        [('LSIL', 2)]
        >>> print(found.problems[0].split(", ", 1)[1])
        line 3: point (70, 5) is outside a.png (60x40 pixels); row skipped
    """
    source = Path(source).absolute()  # relative paths would be taken relative to the folder by fingerprints
    csv_path = source if source.is_file() else find_annotation_csv(source)
    images_dir = csv_path.parent / IMAGES_FOLDER
    if not images_dir.is_dir():
        raise DatasetError(csv_path.parent, f"no {IMAGES_FOLDER}/ folder beside {csv_path.name}")
    problems: list[str] = []
    image_files = _list_images(images_dir, problems)
    points: list[PointAnnotation] = []
    unlabelled: list[PointAnnotation] = []
    sizes: dict[str, tuple[int, int]] = {}
    unreadable: dict[str, str] = {}

    def report(line: int, reason: str) -> None:
        problems.append(str(AnnotationError(csv_path, line, reason)))

    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                report(1, "the file is empty (expected a header image,x,y,label)")
                rows: list[tuple[int, list[str]]] = []
            else:
                rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as e:
        raise DatasetError(csv_path, f"not UTF-8 text ({e.reason} at byte {e.start})") from e

    columns = {name.strip().lower(): i for i, name in enumerate(header or [])}
    label_column = next((c for c in _LABEL_COLUMNS if c in columns), None)
    missing = [c for c in ("image", "x", "y") if c not in columns] + ([] if label_column else ["label"])
    if header is not None and missing:
        have = ", ".join(name.strip() for name in header) or "nothing"
        report(1, f"missing column {', '.join(missing)} (the header has {have}); no row can be used")
        rows = []
    known_labels = ", ".join(BETHESDA_CLASSES)
    mapping = ", ".join(f"{k}->{v}" for k, v in extra_label_map.items()) or "empty"

    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header or []):
            row = row + [""] * (len(header or []) - len(row))
        name = row[columns["image"]].strip()
        x_text, y_text = row[columns["x"]].strip(), row[columns["y"]].strip()
        source_label = row[columns[label_column]].strip()  # type: ignore[index]
        relative = _safe_relative(name) if name else None
        if relative is None:
            report(line, f"image name {name!r} is empty or points outside {IMAGES_FOLDER}/; row skipped")
            continue
        x, y = _number(x_text), _number(y_text)
        if x is None or y is None:
            report(line, f"x and y must be numbers, got x={x_text!r}, y={y_text!r}; row skipped")
            continue
        path = images_dir / relative
        if relative not in sizes and relative not in unreadable:
            if not path.is_file():
                unreadable[relative] = f"image {relative} not found in {images_dir}"
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                unreadable[relative] = f"{relative} is not an image file ({path.suffix or 'no suffix'})"
            else:
                try:
                    sizes[relative] = image_size(path, max_pixels=max_pixels)
                except ImageError as e:
                    unreadable[relative] = f"image {relative} cannot be read: {e.reason}"
        if relative in unreadable:
            report(line, f"{unreadable[relative]}; row skipped")
            continue
        width, height = sizes[relative]
        if not (0 <= x < width and 0 <= y < height):
            report(line, f"point ({x:g}, {y:g}) is outside {relative} ({width}x{height} pixels); row skipped")
            continue
        label = normalise_label(source_label, extra_label_map) if source_label else None
        point = PointAnnotation(image=relative, path=path, x=x, y=y, label=label, source_label=source_label, line=line)
        if label is None:
            report(
                line,
                f"label {source_label!r} is not one of {known_labels} nor in the extra-label map ({mapping}); "
                "row skipped (the cell is still kept out of background patches)",
            )
            unlabelled.append(point)
            continue
        points.append(point)
    return AnnotationSet(
        csv_path=csv_path,
        images_dir=images_dir,
        points=tuple(points),
        unlabelled_points=tuple(unlabelled),
        image_files=image_files,
        image_sizes=sizes,
        problems=tuple(problems),
    )
