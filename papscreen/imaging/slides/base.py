"""The one interface every scan is read through, whatever its format.

A field of view (a JPEG of a few megapixels) and a gigapixel whole-slide pyramid look the same to the rest of
papscreen: level-0 dimensions, pyramid levels with their downsamples, microns per pixel when the file says, and
``read_region``. Coordinates follow OpenSlide: ``location`` is the top-left corner in level-0 pixels, ``size`` is
(width, height) in pixels of the level read, and whatever falls outside the slide comes back white, the colour of
empty glass.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

__all__ = ["WHITE", "SlideReader"]

WHITE = 255

# A thumbnail is built from blocks of at most this many output pixels a side, so a slide without a small
# pyramid level is reduced a few megapixels at a time rather than read whole.
_THUMBNAIL_BLOCK = 128
# Levels at most this large are read in one call when making a thumbnail.
_THUMBNAIL_DIRECT_PIXELS = 16_000_000


class SlideReader(ABC):
    """Read-only access to one scan: a plain image (one level) or a whole-slide pyramid.

    Subclasses fill in ``_level_dimensions`` (level 0 first, each (width, height)), ``mpp`` and
    ``_read_window``; the base class does argument checks, padding outside the slide, level choice and
    thumbnails. Readers are context managers; ``close`` releases the file.

    Examples:
        >>> from papscreen.imaging.slides import ArraySlideReader
        >>> with ArraySlideReader(np.zeros((300, 400, 3), np.uint8), downsamples=(1, 4)) as slide:
        ...     slide.dimensions, slide.level_dimensions[1], slide.read_region((390, 0), 0, (20, 2))[0, -1].tolist()
        ((400, 300), (100, 75), [255, 255, 255])
    """

    path: Path
    mpp: float | None
    """Microns per level-0 pixel (mean of x and y), or ``None`` when the file does not say."""
    _level_dimensions: tuple[tuple[int, int], ...]
    max_region_pixels: int = 250_000_000
    """Largest region ``read_region`` returns in one call (a guard against asking for a gigapixel array)."""

    # -- geometry ---------------------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self._level_dimensions[0]

    @property
    def level_count(self) -> int:
        """Number of pyramid levels (1 for a plain image)."""
        return len(self._level_dimensions)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each level, level 0 first."""
        return self._level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """How many level-0 pixels one pixel of each level spans (mean of x and y, as OpenSlide reports it)."""
        width0, height0 = self._level_dimensions[0]
        return tuple((width0 / w + height0 / h) / 2.0 for w, h in self._level_dimensions)

    def best_level_for_downsample(self, downsample: float) -> int:
        """The smallest level whose downsample does not exceed ``downsample`` (OpenSlide's rule).

        Examples:
            >>> from papscreen.imaging.slides import ArraySlideReader
            >>> slide = ArraySlideReader(np.zeros((64, 64, 3), np.uint8), downsamples=(1, 2, 4))
            >>> [slide.best_level_for_downsample(d) for d in (0.5, 1, 3.9, 4, 100)]
            [0, 0, 1, 2, 2]
        """
        best = 0
        for level, level_downsample in enumerate(self.level_downsamples):
            if level_downsample <= downsample * (1 + 1e-6):
                best = level
        return best

    # -- pixels -----------------------------------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read ``size`` = (width, height) pixels of ``level`` whose top-left corner is ``location`` in level 0.

        Returns:
            An HxWx3 uint8 RGB array; parts outside the slide are white.

        Raises:
            ValueError: a level that does not exist, a non-positive size, or a region over ``max_region_pixels``.
            UnreadableRegionError: the file is damaged inside this region.
        """
        x0, y0, level, width, height = self._check_region(location, level, size)
        downsample = self.level_downsamples[level]
        # Level coordinates of the corner: the level pixel that contains the level-0 location.
        x = math.floor(x0 / downsample)
        y = math.floor(y0 / downsample)
        return self._read_padded(level, x, y, width, height, ((x0, y0), level, (width, height)))

    def _read_padded(
        self, level: int, x: int, y: int, width: int, height: int, request: tuple[tuple[int, int], int, tuple[int, int]]
    ) -> np.ndarray:
        """Read a window in level coordinates that may reach outside the level; the outside is white."""
        level_width, level_height = self._level_dimensions[level]
        left, top = max(x, 0), max(y, 0)
        right, bottom = min(x + width, level_width), min(y + height, level_height)
        if left >= right or top >= bottom:
            return np.full((height, width, 3), WHITE, np.uint8)
        window = self._read_window(level, left, top, right - left, bottom - top, request)
        if (left, top, right, bottom) == (x, y, x + width, y + height):
            return window
        out = np.full((height, width, 3), WHITE, np.uint8)
        out[top - y : bottom - y, left - x : right - x] = window
        return out

    @abstractmethod
    def _read_window(
        self, level: int, x: int, y: int, width: int, height: int, request: tuple[tuple[int, int], int, tuple[int, int]]
    ) -> np.ndarray:
        """Read a window lying wholly inside ``level`` (level coordinates) as HxWx3 uint8 RGB.

        ``request`` is the caller's (location, level, size), for error messages.
        """

    def _check_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> tuple[int, ...]:
        x0, y0 = (int(v) for v in location)
        width, height = (int(v) for v in size)
        level = int(level)
        if not 0 <= level < self.level_count:
            raise ValueError(f"{self.path}: level {level} does not exist (the slide has {self.level_count})")
        if width <= 0 or height <= 0:
            raise ValueError(f"{self.path}: region size must be positive, got {width}x{height}")
        if width * height > self.max_region_pixels:
            raise ValueError(
                f"{self.path}: a {width}x{height} region is over the limit of {self.max_region_pixels:,} pixels "
                "per read; read it in tiles"
            )
        return x0, y0, level, width, height

    def thumbnail(self, max_side: int) -> np.ndarray:
        """The whole slide as RGB, its longer side ``max_side`` pixels (never larger than level 0).

        Reads the pyramid level nearest the thumbnail's scale; a slide without a small level is reduced block
        by block, so a thumbnail never needs the whole slide in memory.
        """
        if max_side <= 0:
            raise ValueError(f"max_side must be positive, got {max_side}")
        width0, height0 = self.dimensions
        scale = min(1.0, max_side / max(width0, height0))
        out_width, out_height = max(1, round(width0 * scale)), max(1, round(height0 * scale))
        level = self.best_level_for_downsample(1.0 / scale)
        level_width, level_height = self._level_dimensions[level]
        if level_width * level_height <= _THUMBNAIL_DIRECT_PIXELS:
            whole = self.read_region((0, 0), level, (level_width, level_height))
            if (level_width, level_height) == (out_width, out_height):
                return whole
            return np.asarray(Image.fromarray(whole).resize((out_width, out_height), Image.Resampling.BOX))
        out = np.empty((out_height, out_width, 3), np.uint8)
        fx, fy = level_width / out_width, level_height / out_height
        downsample = self.level_downsamples[level]
        for by in range(0, out_height, _THUMBNAIL_BLOCK):
            for bx in range(0, out_width, _THUMBNAIL_BLOCK):
                bw, bh = min(_THUMBNAIL_BLOCK, out_width - bx), min(_THUMBNAIL_BLOCK, out_height - by)
                sx0, sy0 = math.floor(bx * fx), math.floor(by * fy)
                sx1 = min(level_width, math.ceil((bx + bw) * fx))
                sy1 = min(level_height, math.ceil((by + bh) * fy))
                request = ((round(sx0 * downsample), round(sy0 * downsample)), level, (sx1 - sx0, sy1 - sy0))
                block = self._read_padded(level, sx0, sy0, sx1 - sx0, sy1 - sy0, request)
                box = (bx * fx - sx0, by * fy - sy0, (bx + bw) * fx - sx0, (by + bh) * fy - sy0)
                resized = Image.fromarray(block).resize((bw, bh), Image.Resampling.BOX, box=box)
                out[by : by + bh, bx : bx + bw] = np.asarray(resized)
        return out

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - readers with nothing to release keep the default
        """Release the file; the reader cannot be used afterwards."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        width, height = self.dimensions
        mpp = "unknown" if self.mpp is None else f"{self.mpp:.4g}"
        return f"{type(self).__name__}({str(self.path)!r}, {width}x{height}, levels={self.level_count}, mpp={mpp})"
