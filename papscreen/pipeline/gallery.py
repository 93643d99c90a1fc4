"""The gallery: the slide's N most suspicious cells across classes, each nucleus once, most suspicious first.

A screener confirms a machine verdict by looking at the cells behind it, worst first. Ranking every class in
one list by the probability that the cell is abnormal (1 - p(NILM)) puts the cells that decide the slide on
top whatever their grade; a cell stage 1 found twice (two peaks on one large nucleus) would show the same
nucleus twice, so a cell whose centre lies within half a crop of a more suspicious one is left out: its
nucleus is already in that crop.

The ranking runs as the batches go by (a bounded heap), so memory stays flat on a whole slide with 100k cells.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from papscreen.pipeline.result import GalleryCell

__all__ = ["SuspiciousCells", "overlap_distance", "select_separated"]

_HEADROOM = 3
"""Candidates kept per gallery place, so that dropping overlapping cells still leaves ``size`` of them."""


def overlap_distance(crop_px: int) -> float:
    """Centres closer than this (level-0 px) show one nucleus twice: half the crop's side."""
    return crop_px / 2.0


def select_separated(xy: np.ndarray, order: np.ndarray, min_distance: float, limit: int) -> list[int]:
    """Walk ``order`` (indices into ``xy``) and keep each point farther than ``min_distance`` from every kept one.

    Greedy, as non-maximum suppression: the first (most suspicious) of an overlapping group stays.

    Examples:
        >>> xy = np.array([[0.0, 0.0], [5.0, 0.0], [50.0, 0.0]])
        >>> select_separated(xy, np.array([0, 1, 2]), 10.0, 5)
        [0, 2]
        >>> select_separated(xy, np.array([1, 0, 2]), 10.0, 1)
        [1]
    """
    kept: list[int] = []
    for index in order:
        if len(kept) == limit:
            break
        point = xy[index]
        if all(np.hypot(*(point - xy[k])) >= min_distance for k in kept):
            kept.append(int(index))
    return kept


@dataclass
class SuspiciousCells:
    """Collects, batch by batch, the cells most likely abnormal; :meth:`cells` returns the de-duplicated gallery.

    Attributes:
        classes: the stage-2 class names, in its output order.
        size: gallery length (0 keeps none).
        min_distance: centres closer than this, level-0 px, count as one nucleus (see :func:`overlap_distance`).
    """

    classes: tuple[str, ...]
    size: int
    min_distance: float
    _heap: list[tuple[float, int, int, float, float, float, np.ndarray]] = field(default_factory=list)

    def offer(self, probabilities: np.ndarray, indices: np.ndarray, xy: np.ndarray, crops: np.ndarray) -> None:
        """Consider one batch: probabilities (B, C), cell indices (B,), centres (B, 2) and crops (B, H, W, 3)."""
        if self.size == 0 or len(probabilities) == 0:
            return
        capacity = self.size * _HEADROOM
        normal = self.classes.index("NILM") if "NILM" in self.classes else None
        suspicion = 1.0 - probabilities[:, normal] if normal is not None else probabilities.max(axis=1)
        predicted = probabilities.argmax(axis=1)
        for k in range(len(probabilities)):
            key = (float(suspicion[k]), -int(indices[k]))
            if len(self._heap) == capacity and key <= self._heap[0][:2]:
                continue
            chosen = int(predicted[k])
            entry = (*key, chosen, float(probabilities[k, chosen]), float(xy[k, 0]), float(xy[k, 1]), crops[k].copy())
            (heapq.heappush if len(self._heap) < capacity else heapq.heapreplace)(self._heap, entry)

    def cells(self) -> tuple[GalleryCell, ...]:
        """The gallery, most suspicious first, no two cells closer than ``min_distance``."""
        ranked = sorted(self._heap, key=lambda e: (-e[0], -e[1]))
        xy = np.array([[e[4], e[5]] for e in ranked]).reshape(-1, 2)
        kept = select_separated(xy, np.arange(len(ranked)), self.min_distance, self.size)
        return tuple(
            GalleryCell(
                index=-ranked[i][1],
                label=self.classes[ranked[i][2]],
                probability=ranked[i][3],
                x=ranked[i][4],
                y=ranked[i][5],
                crop=ranked[i][6],
                suspicion_rank=ranked[i][0],
            )
            for i in kept
        )
