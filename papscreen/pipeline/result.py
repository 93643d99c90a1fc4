"""What one analysis of a scan produces: graded cells, the slide summary, the gallery and the overlay.

Plain data with no behaviour beyond derived views, so the database layer, the exports and the dashboard can all
read it without knowing how it was made. Positions are level-0 pixels of the scan (x = column, y = row, pixel
centres at integers), the convention QuPath and OpenSlide use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Adequacy", "CellTable", "GalleryCell", "ScanKind", "SlideResult", "SlideSummary"]

ScanKind = Literal["field", "slide"]
Adequacy = Literal["satisfactory", "unsatisfactory"]


@dataclass(frozen=True, eq=False)
class CellTable:
    """Every cell found, one row each, in the order found (tile by tile).

    Attributes:
        xy: (N, 2) float64 nucleus centres (x, y), level-0 pixels.
        detection_scores: (N,) float32 stage-1 cell probability.
        probabilities: (N, C) float32 calibrated stage-2 probabilities, columns in ``classes`` order.
        classes: the stage-2 model's class names.

    Examples:
        >>> cells = CellTable(np.array([[5.0, 6.0]]), np.array([0.9], np.float32),
        ...                   np.array([[0.1, 0.2, 0.6, 0.1]], np.float32), ("NILM", "LSIL", "HSIL", "SCC"))
        >>> cells.labels, round(float(cells.suspicion[0]), 3)
        (['HSIL'], 0.9)
    """

    xy: np.ndarray
    detection_scores: np.ndarray
    probabilities: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        """Number of cells."""
        return len(self.detection_scores)

    @property
    def predicted(self) -> np.ndarray:
        """(N,) index of each cell's most probable class."""
        if len(self) == 0:
            return np.zeros(0, np.int64)
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> list[str]:
        """Each cell's most probable class name."""
        return [self.classes[i] for i in self.predicted]

    @property
    def suspicion(self) -> np.ndarray:
        """(N,) probability that the cell is abnormal: 1 - p(NILM) (the sum over abnormal classes otherwise)."""
        abnormal = [i for i, name in enumerate(self.classes) if name != "NILM"]
        if len(self) == 0:
            return np.zeros(0, np.float32)
        return self.probabilities[:, abnormal].sum(axis=1).astype(np.float32)

    @classmethod
    def empty(cls, classes: tuple[str, ...]) -> CellTable:
        """A table with no cells."""
        return cls(np.zeros((0, 2)), np.zeros(0, np.float32), np.zeros((0, len(classes)), np.float32), classes)


@dataclass(frozen=True, eq=False)
class GalleryCell:
    """One of the slide's most suspicious cells, with its full-resolution crop.

    Attributes:
        index: row in the :class:`CellTable`.
        label: the class it is shown under (its most probable class).
        probability: its probability of that class.
        x: nucleus centre, level-0 pixels.
        y: nucleus centre, level-0 pixels.
        crop: the crop stage 2 saw, HxWx3 uint8.
        suspicion_rank: what the gallery is sorted by (descending): the probability that the cell is abnormal,
            1 - p(NILM), whatever its most probable class.
    """

    index: int
    label: str
    probability: float
    x: float
    y: float
    crop: np.ndarray
    suspicion_rank: float


@dataclass(frozen=True)
class SlideSummary:
    """The slide-level verdict and how it was reached.

    Attributes:
        cell_count: squamous cells found and graded.
        class_counts: cells per class (most probable class), every class listed.
        abnormal_score: mean suspicion of the ``abnormal_top_k`` most suspicious cells, in [0, 1]; ranks the worklist.
        category: the highest grade with confident support (``NILM`` when none has it).
        grade_support: per abnormal grade, the cells whose probability of that grade or worse reached the threshold.
        adequacy: ``unsatisfactory`` when fewer squamous cells were found than the threshold for the scan kind.
        adequacy_reason: one sentence saying why.
        scan_kind: ``field`` (a single field of view) or ``slide`` (a whole-slide scan).
        dimensions: level-0 (width, height), pixels.
        mpp: microns per level-0 pixel, when the scan says.
        stage1_level: the pyramid level stage 1 read.
        tiles: stage-1 tiles in the scan, and how many were analysed (the rest were blank glass).
        device: where the models ran.
        precision: stage-2 precision used.
        models: the names (or sources) of the stage-1 and stage-2 models.
        timings: seconds spent reading, in stage 1, in stage 2, and in total (wall clock).
        settings: the grading thresholds used, so a result can be reproduced.
        category_reason: one sentence saying which rule gave the category, with the figures it saw.
    """

    cell_count: int
    class_counts: dict[str, int]
    abnormal_score: float
    category: str
    grade_support: dict[str, int]
    adequacy: Adequacy
    adequacy_reason: str
    scan_kind: ScanKind
    dimensions: tuple[int, int]
    mpp: float | None
    stage1_level: int
    tiles: dict[str, int]
    device: str
    precision: str
    models: dict[str, str]
    timings: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    category_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON values."""
        return {
            "cell_count": self.cell_count,
            "class_counts": dict(self.class_counts),
            "abnormal_score": round(float(self.abnormal_score), 6),
            "category": self.category,
            "category_reason": self.category_reason,
            "grade_support": dict(self.grade_support),
            "adequacy": self.adequacy,
            "adequacy_reason": self.adequacy_reason,
            "scan_kind": self.scan_kind,
            "dimensions": list(self.dimensions),
            "mpp": self.mpp,
            "stage1_level": self.stage1_level,
            "tiles": dict(self.tiles),
            "device": self.device,
            "precision": self.precision,
            "models": dict(self.models),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "settings": self.settings,
        }


@dataclass(frozen=True, eq=False)
class SlideResult:
    """Everything one analysis produced.

    Attributes:
        source: the scan's path (or a name for an in-memory slide).
        cells: every cell found, graded.
        summary: the slide-level verdict.
        gallery: the slide's most suspicious cells across classes, most suspicious first, each nucleus once
            (see :mod:`papscreen.pipeline.gallery`).
        overlay: a thumbnail of the scan, HxWx3 uint8, with a box round each cell coloured by class.
        overlay_scale: overlay pixels per level-0 pixel.
    """

    source: str
    cells: CellTable
    summary: SlideSummary
    gallery: tuple[GalleryCell, ...]
    overlay: np.ndarray
    overlay_scale: float
