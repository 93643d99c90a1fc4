"""A slide held in memory as a numpy array: plain images, and tests that need no slide file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from papscreen.imaging.slides.base import SlideReader

__all__ = ["ArraySlideReader"]


class ArraySlideReader(SlideReader):
    """An HxWx3 uint8 RGB array as a slide, optionally with a pyramid built by box-filter reduction.

    Args:
        rgb: level 0, HxWx3 uint8.
        mpp: microns per pixel, if known.
        downsamples: integer factors of the levels to build (1 first), for code that picks a lower level.
        path: a name for messages; ``<memory>`` by default.

    Examples:
        >>> slide = ArraySlideReader(np.zeros((100, 120, 3), np.uint8), mpp=0.5, downsamples=(1, 2))
        >>> slide.level_dimensions, slide.level_downsamples
        (((120, 100), (60, 50)), (1.0, 2.0))
    """

    def __init__(
        self,
        rgb: np.ndarray,
        *,
        mpp: float | None = None,
        downsamples: Sequence[int] = (1,),
        path: str | Path = "<memory>",
    ) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 array, got {rgb.shape} {rgb.dtype}")
        if not downsamples or downsamples[0] != 1 or any(int(d) < 1 for d in downsamples):
            raise ValueError(f"downsamples must start with 1 and be positive integers, got {tuple(downsamples)}")
        self.path = Path(path)
        self.mpp = mpp
        self._levels: list[np.ndarray] = [np.ascontiguousarray(rgb)]
        image = Image.fromarray(self._levels[0])
        for factor in downsamples[1:]:
            width = max(1, rgb.shape[1] // int(factor))
            height = max(1, rgb.shape[0] // int(factor))
            self._levels.append(np.asarray(image.resize((width, height), Image.Resampling.BOX)))
        self._level_dimensions = tuple((level.shape[1], level.shape[0]) for level in self._levels)

    def _read_window(
        self, level: int, x: int, y: int, width: int, height: int, request: tuple[tuple[int, int], int, tuple[int, int]]
    ) -> np.ndarray:
        return self._levels[level][y : y + height, x : x + width].copy()

    def close(self) -> None:
        """Drop the pixels."""
        self._levels = [np.empty((0, 0, 3), np.uint8)]
